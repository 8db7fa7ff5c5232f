import { describe, expect, it } from 'vitest';
import { moveCard, optimisticMove, restoreCard, visible, type Column } from './moves';

type D = { id: string; stage_id: string; owner_id?: string | null; title: string };
const board = (): Column<D>[] => [
  { stageId: 'a', count: 3, nextCursor: null, deals: [
    { id: '1', stage_id: 'a', title: 'one' },
    { id: '2', stage_id: 'a', title: 'two', owner_id: 'u1' },
    { id: '3', stage_id: 'a', title: 'three' },
  ] },
  { stageId: 'b', count: 1, nextCursor: 'c', deals: [{ id: '4', stage_id: 'b', title: 'four' }] },
];
const ids = (cols: Column<D>[]) => cols.map((c) => `${c.stageId}:${c.deals.map((d) => d.id).join(',')}:${c.count}`);

describe('optimistic move', () => {
  it('moves the card to the top of the target column at once and keeps it on success', async () => {
    let cols = board();
    const seen: string[][] = [];
    let resolve!: (d: D) => void;
    const pending = optimisticMove(() => cols, (c) => { cols = c; seen.push(ids(c)); }, '2', 'b',
      () => new Promise<D>((r) => { resolve = r; }));
    // Before the server answers, the card is already in its new column.
    expect(ids(cols)).toEqual(['a:1,3:2', 'b:2,4:2']);
    resolve({ id: '2', stage_id: 'b', title: 'two (server)', owner_id: 'u1' });
    const out = await pending;
    expect(out.ok).toBe(true);
    expect(ids(cols)).toEqual(['a:1,3:2', 'b:2,4:2']);
    expect(cols[1]!.deals[0]!.title).toBe('two (server)');
    expect(seen).toHaveLength(2);
  });

  it('rolls back to the same place and answers the server error when refused', async () => {
    let cols = board();
    const refusal = new Error('Deal is closed');
    const out = await optimisticMove(() => cols, (c) => { cols = c; }, '2', 'b', async () => { throw refusal; });
    expect(out).toEqual({ ok: false, error: refusal });
    expect(ids(cols)).toEqual(ids(board()));
    expect(cols[0]!.deals[1]!.stage_id).toBe('a');
  });

  it('rolls back only that card when another move happened meanwhile', async () => {
    let cols = board();
    let reject!: (e: unknown) => void;
    const first = optimisticMove(() => cols, (c) => { cols = c; }, '1', 'b', () => new Promise<D>((_, r) => { reject = r; }));
    const second = optimisticMove(() => cols, (c) => { cols = c; }, '3', 'b', async () => ({ id: '3', stage_id: 'b', title: 'three' }));
    await second;
    reject(new Error('no'));
    await first;
    expect(ids(cols)).toEqual(['a:1,2:2', 'b:3,4:2']);
  });

  it('does nothing when dropped on its own column', async () => {
    let cols = board();
    let called = false;
    const out = await optimisticMove(() => cols, (c) => { cols = c; }, '1', 'a', async () => { called = true; return cols[0]!.deals[0]!; });
    expect(out).toEqual({ ok: 'noop' });
    expect(called).toBe(false);
  });

  it('restores at the end when the column shrank', () => {
    const cols = moveCard(board(), '3', 'b')!;
    const back = restoreCard(cols, { id: '3', stage_id: 'a', title: 'three' }, { stageId: 'a', index: 7 });
    expect(ids(back)).toEqual(['a:1,2,3:3', 'b:4:1']);
  });
});

describe('owner filter', () => {
  it('mine, unowned, everyone', () => {
    const deals = board()[0]!.deals;
    expect(visible(deals, 'mine', 'u1').map((d) => d.id)).toEqual(['2']);
    expect(visible(deals, 'unowned', 'u1').map((d) => d.id)).toEqual(['1', '3']);
    expect(visible(deals, 'everyone', 'u1')).toHaveLength(3);
  });
});
