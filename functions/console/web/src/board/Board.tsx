import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { draggable, dropTargetForElements, monitorForElements } from '@atlaskit/pragmatic-drag-and-drop/element/adapter';
import { api, reason, unwrap, type Deal, type Pipeline, type Stage } from '../api/client';
import { session$ } from '../api/session';
import { useI18n } from '../i18n';
import { onLink } from '../router';
import { toast } from '../shell/toasts';
import { useStore } from '../store';
import { optimisticMove, replaceCard, visible, type Column, type OwnerFilter } from './moves';

/** Deals per column per page (the API's maximum: a 500-deal board is whole on first paint). */
const PAGE = 200;

type Col = Column<Deal> & { stage: Stage };

export function Board() {
  const { t } = useI18n();
  const me = useStore(session$)!;
  const [pipelines, setPipelines] = useState<Pipeline[] | null>(null);
  const [pipelineId, setPipelineId] = useState<string | null>(null);
  const [cols, setColsState] = useState<Col[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [filter, setFilter] = useState<OwnerFilter>('everyone');
  const colsRef = useRef<Col[] | null>(null);
  const setCols = (c: Col[]) => {
    colsRef.current = c;
    setColsState(c);
  };

  useEffect(() => {
    api.GET('/crm/pipelines').then((r) => {
      try {
        const list = unwrap(r).pipelines;
        setPipelines(list);
        setPipelineId((list.find((p) => p.is_default) ?? list[0])?.id ?? null);
      } catch (e) {
        setError(reason(e));
      }
    });
  }, []);

  useEffect(() => {
    if (!pipelineId) return;
    setColsState(null);
    api.GET('/crm/deals', { params: { query: { pipeline_id: pipelineId, limit: PAGE } } }).then((r) => {
      try {
        const b = unwrap(r);
        setCols(b.stages.map((c) => ({ stage: c.stage, stageId: c.stage.id, deals: c.deals, count: c.count, nextCursor: c.next_cursor })));
      } catch (e) {
        setError(reason(e));
      }
    });
  }, [pipelineId]);

  const move = async (dealId: string, toStageId: string) => {
    const current = colsRef.current;
    if (!current) return;
    const deal = current.flatMap((c) => c.deals).find((d) => d.id === dealId);
    const stage = current.find((c) => c.stageId === toStageId)?.stage;
    if (!deal || !stage) return;
    const out = await optimisticMove<Deal>(
      () => colsRef.current ?? [],
      (c) => setCols(c as Col[]),
      dealId,
      toStageId,
      async () =>
        unwrap(
          await api.POST('/crm/actions/deals/{id}/stage', {
            params: { path: { id: dealId }, header: { 'Idempotency-Key': crypto.randomUUID() } },
            body: { stage_id: toStageId },
          }),
        ),
    );
    if (out.ok === true) toast(t('board.moved', { title: deal.title, stage: stage.name }));
    else if (out.ok === false) toast(t('board.moveFailed', { title: deal.title, reason: reason(out.error) }), 'error');
  };

  const loadMore = async (col: Col) => {
    if (!col.nextCursor) return;
    try {
      const b = unwrap(await api.GET('/crm/deals', { params: { query: { cursor: col.nextCursor, limit: PAGE } } }));
      const page = b.stages[0];
      if (!page) return;
      const known = new Set(col.deals.map((d) => d.id));
      setCols((colsRef.current ?? []).map((c) =>
        c.stageId === col.stageId
          ? { ...c, deals: [...c.deals, ...page.deals.filter((d) => !known.has(d.id))], nextCursor: page.next_cursor }
          : c,
      ));
    } catch (e) {
      toast(reason(e), 'error');
    }
  };

  const claim = async (deal: Deal) => {
    try {
      unwrap(
        await api.POST('/crm/actions/contacts/{id}/claim', {
          params: { path: { id: deal.contact_id }, header: { 'Idempotency-Key': crypto.randomUUID() } },
          body: {},
        }),
      );
      let next = colsRef.current ?? [];
      for (const d of next.flatMap((c) => c.deals).filter((d) => d.contact_id === deal.contact_id && !d.owner_id)) {
        next = replaceCard(next, { ...d, owner_id: me.user.id }) as Col[];
      }
      setCols(next as Col[]);
    } catch (e) {
      toast(reason(e), 'error');
    }
  };

  // One monitor for the whole board: a card dropped on a column moves there.
  useEffect(
    () =>
      monitorForElements({
        onDrop: ({ source, location }) => {
          const target = location.current.dropTargets[0];
          const dealId = source.data.dealId;
          const stageId = target?.data.stageId;
          if (typeof dealId === 'string' && typeof stageId === 'string') void move(dealId, stageId);
        },
      }),
    [],
  );

  if (error) return <main class="page"><p class="error" role="alert">{t('common.error', { reason: error })}</p></main>;
  const isAdmin = me.user.role === 'admin';
  return (
    <main class="page board-page">
      <div class="toolbar">
        <h1>{t('board.title')}</h1>
        {pipelines && pipelines.length > 1 && (
          <label>
            {t('board.pipeline')}
            <select value={pipelineId ?? ''} onChange={(e) => setPipelineId(e.currentTarget.value)}>
              {pipelines.map((p) => <option key={p.id} value={p.id}>{p.name}</option>)}
            </select>
          </label>
        )}
        {isAdmin && (
          <div role="radiogroup" aria-label={t('board.filter')} class="segmented">
            {(['everyone', 'mine', 'unowned'] as const).map((f) => (
              <button key={f} type="button" role="radio" aria-checked={filter === f} onClick={() => setFilter(f)}>
                {t(`board.filter.${f}`)}
              </button>
            ))}
          </div>
        )}
        <p class="hint">{t('board.dragHint')}</p>
      </div>
      {!cols ? (
        <p role="status">{t('common.loading')}</p>
      ) : (
        <div class="columns">
          {cols.map((c) => (
            <BoardColumnView key={c.stageId} col={c} all={cols} deals={visible(c.deals, filter, me.user.id)} me={me.user.id}
              onMove={move} onMore={() => loadMore(c)} onClaim={claim} />
          ))}
        </div>
      )}
    </main>
  );
}

function BoardColumnView(props: {
  col: Col;
  all: Col[];
  deals: Deal[];
  me: string;
  onMove: (dealId: string, stageId: string) => void;
  onMore: () => void;
  onClaim: (d: Deal) => void;
}) {
  const { t, f } = useI18n();
  const ref = useRef<HTMLElement>(null);
  const [over, setOver] = useState(false);
  const { col } = props;
  useEffect(() => {
    const el = ref.current;
    if (!el) return;
    return dropTargetForElements({
      element: el,
      getData: () => ({ stageId: col.stageId }),
      canDrop: ({ source }) => source.data.stageId !== col.stageId,
      onDragEnter: () => setOver(true),
      onDragLeave: () => setOver(false),
      onDrop: () => setOver(false),
    });
  }, [col.stageId]);
  return (
    <section ref={ref} class={`column kind-${col.stage.kind}${over ? ' over' : ''}`} aria-label={t('board.column', { stage: col.stage.name })}>
      <header>
        <h2>{col.stage.name}</h2>
        <span class="count">{t(col.count === 1 ? 'board.countOne' : 'board.count', { count: f.number(col.count) })}</span>
      </header>
      <ul class="cards">
        {props.deals.length === 0 && <li class="empty">{t('board.empty')}</li>}
        {props.deals.map((d) => (
          <li key={d.id}>
            <DealCard deal={d} stages={props.all.map((c) => c.stage)} me={props.me} onMove={props.onMove} onClaim={props.onClaim} />
          </li>
        ))}
      </ul>
      {col.nextCursor && (
        <button type="button" class="more" onClick={props.onMore}>
          {t('common.loadMore')}
        </button>
      )}
    </section>
  );
}

function DealCard(props: { deal: Deal; stages: Stage[]; me: string; onMove: (id: string, stageId: string) => void; onClaim: (d: Deal) => void }) {
  const { t, f } = useI18n();
  const { deal } = props;
  const ref = useRef<HTMLElement>(null);
  const [dragging, setDragging] = useState(false);
  const [menu, setMenu] = useState(false);
  const menuRef = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = ref.current;
    if (!el) return;
    return draggable({
      element: el,
      getInitialData: () => ({ dealId: deal.id, stageId: deal.stage_id }),
      onDragStart: () => setDragging(true),
      onDrop: () => setDragging(false),
    });
  }, [deal.id, deal.stage_id]);
  useEffect(() => {
    if (menu) (menuRef.current?.querySelector('[role=menuitem]') as HTMLElement | null)?.focus();
  }, [menu]);
  const owner = deal.owner_id ? (deal.owner_id === props.me ? t('common.me') : deal.owner_id) : t('common.unowned');
  const since = useMemo(() => Date.now() - new Date(deal.updated_at).getTime(), [deal.updated_at]);
  const onMenuKey = (e: KeyboardEvent) => {
    const items = [...(menuRef.current?.querySelectorAll<HTMLElement>('[role=menuitem]') ?? [])];
    const i = items.indexOf(document.activeElement as HTMLElement);
    if (e.key === 'Escape') { setMenu(false); e.preventDefault(); }
    else if (e.key === 'ArrowDown') { items[(i + 1) % items.length]?.focus(); e.preventDefault(); }
    else if (e.key === 'ArrowUp') { items[(i - 1 + items.length) % items.length]?.focus(); e.preventDefault(); }
  };
  return (
    <article ref={ref} class={`deal${dragging ? ' dragging' : ''}`} aria-label={deal.title}>
      <h3>{deal.title}</h3>
      {deal.contact && (
        <a class="contact" href={`/contacts/${deal.contact_id}`} onClick={(e) => onLink(e, `/contacts/${deal.contact_id}`)}>
          {deal.contact.full_name || deal.contact.email || deal.contact.company || '—'}
        </a>
      )}
      <dl>
        {deal.value_cents != null && (<><dt>{t('board.value')}</dt><dd>{f.money(deal.value_cents, deal.currency)}</dd></>)}
      </dl>
      <p class="meta">
        <span>{t('board.owner', { owner })}</span>
        <span title={f.dateTime(deal.updated_at)}>{t('board.age', { age: f.duration(since) })}</span>
      </p>
      <div class="actions">
        <button type="button" aria-haspopup="menu" aria-expanded={menu} onClick={() => setMenu(!menu)}>
          {t('board.moveTo')}
        </button>
        {!deal.owner_id && (
          <button type="button" aria-label={t('board.claimDeal', { title: deal.title })} onClick={() => props.onClaim(deal)}>
            {t('board.claim')}
          </button>
        )}
      </div>
      {menu && (
        <div ref={menuRef} role="menu" aria-label={t('board.moveMenu', { title: deal.title })} class="menu" onKeyDown={onMenuKey}>
          {props.stages.filter((s) => s.id !== deal.stage_id).map((s) => (
            <button key={s.id} type="button" role="menuitem" onClick={() => { setMenu(false); props.onMove(deal.id, s.id); }}>
              {s.name}
            </button>
          ))}
        </div>
      )}
    </article>
  );
}
