/** The board's state changes, free of the DOM: an optimistic move that
 * the server confirms or refuses (then the card goes back where it was). */

export interface CardLike {
  id: string;
  stage_id: string;
  owner_id?: string | null;
}

export interface Column<D extends CardLike> {
  stageId: string;
  deals: D[];
  count: number;
  nextCursor: string | null;
}

/** Where a card was, to put it back. */
export interface Origin {
  stageId: string;
  index: number;
}

export function locate<D extends CardLike>(cols: Column<D>[], dealId: string): (Origin & { deal: D }) | null {
  for (const c of cols) {
    const index = c.deals.findIndex((d) => d.id === dealId);
    if (index >= 0) return { stageId: c.stageId, index, deal: c.deals[index]! };
  }
  return null;
}

/** The card moved to the top of `toStageId` (counts follow); null if nothing to do. */
export function moveCard<D extends CardLike>(cols: Column<D>[], dealId: string, toStageId: string): Column<D>[] | null {
  const at = locate(cols, dealId);
  if (!at || at.stageId === toStageId || !cols.some((c) => c.stageId === toStageId)) return null;
  const moved = { ...at.deal, stage_id: toStageId };
  return cols.map((c) => {
    if (c.stageId === at.stageId)
      return { ...c, deals: c.deals.filter((d) => d.id !== dealId), count: Math.max(0, c.count - 1) };
    if (c.stageId === toStageId) return { ...c, deals: [moved, ...c.deals], count: c.count + 1 };
    return c;
  });
}

/** Puts `deal` back at its origin, wherever it is now (other moves may have happened meanwhile). */
export function restoreCard<D extends CardLike>(cols: Column<D>[], deal: D, origin: Origin): Column<D>[] {
  const now = locate(cols, deal.id);
  return cols.map((c) => {
    let deals = c.deals;
    let count = c.count;
    if (now && c.stageId === now.stageId) {
      deals = deals.filter((d) => d.id !== deal.id);
      count = Math.max(0, count - 1);
    }
    if (c.stageId === origin.stageId) {
      deals = [...deals];
      deals.splice(Math.min(origin.index, deals.length), 0, deal);
      count += 1;
    }
    return deals === c.deals && count === c.count ? c : { ...c, deals, count };
  });
}

/** Replaces a card by the server's version of it (same column). */
export function replaceCard<D extends CardLike>(cols: Column<D>[], deal: D): Column<D>[] {
  return cols.map((c) =>
    c.deals.some((d) => d.id === deal.id) ? { ...c, deals: c.deals.map((d) => (d.id === deal.id ? deal : d)) } : c,
  );
}

export type MoveOutcome<D> = { ok: true; deal: D } | { ok: false; error: unknown } | { ok: 'noop' };

/**
 * Moves the card at once (`set`), calls the server, then keeps the server's
 * card or rolls back to where it was, answering the server's refusal.
 */
export async function optimisticMove<D extends CardLike>(
  get: () => Column<D>[],
  set: (cols: Column<D>[]) => void,
  dealId: string,
  toStageId: string,
  call: () => Promise<D>,
): Promise<MoveOutcome<D>> {
  const before = get();
  const at = locate(before, dealId);
  const next = moveCard(before, dealId, toStageId);
  if (!at || !next) return { ok: 'noop' };
  set(next);
  try {
    const deal = await call();
    set(replaceCard(get(), { ...deal, stage_id: toStageId }));
    return { ok: true, deal };
  } catch (error) {
    set(restoreCard(get(), at.deal, { stageId: at.stageId, index: at.index }));
    return { ok: false, error };
  }
}

export type OwnerFilter = 'everyone' | 'mine' | 'unowned';

export function visible<D extends CardLike>(deals: D[], filter: OwnerFilter, me: string): D[] {
  switch (filter) {
    case 'everyone':
      return deals;
    case 'mine':
      return deals.filter((d) => d.owner_id === me);
    case 'unowned':
      return deals.filter((d) => !d.owner_id);
  }
}
