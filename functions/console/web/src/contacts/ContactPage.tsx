import { useEffect, useState } from 'preact/hooks';
import { api, reason, unwrap, type ContactDetail, type Schemas } from '../api/client';
import { session$ } from '../api/session';
import { useI18n, type Key } from '../i18n';
import { onLink } from '../router';
import { toast } from '../shell/toasts';
import { useStore } from '../store';

const CHANNELS = ['whatsapp', 'sms', 'email'] as const;

export function ContactPage({ id }: { id: string }) {
  const { t, f } = useI18n();
  const me = useStore(session$)!;
  const [detail, setDetail] = useState<ContactDetail | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [assignee, setAssignee] = useState('');
  const [c2s, setC2s] = useState<Schemas['ContactC2s'] | null>(null);

  const load = async () => {
    try {
      setDetail(unwrap(await api.GET('/crm/contacts/{id}', { params: { path: { id } } })));
    } catch (e) {
      setError(reason(e));
    }
  };
  useEffect(() => {
    void load();
    api.GET('/crm/contacts/{id}/c2s', { params: { path: { id } } }).then((r) => setC2s(r.data ?? null));
  }, [id]);

  const claim = async () => {
    try {
      unwrap(await api.POST('/crm/actions/contacts/{id}/claim', { params: { path: { id }, header: { 'Idempotency-Key': crypto.randomUUID() } }, body: {} }));
      await load();
    } catch (e) {
      toast(reason(e), 'error');
    }
  };
  const assign = async (owner: string) => {
    try {
      unwrap(await api.POST('/crm/actions/contacts/{id}/assign', { params: { path: { id }, header: { 'Idempotency-Key': crypto.randomUUID() } }, body: { owner_id: owner } }));
      await load();
    } catch (e) {
      toast(reason(e), 'error');
    }
  };

  if (error) return <main class="page"><p class="error" role="alert">{t('common.error', { reason: error })}</p></main>;
  if (!detail) return <main class="page"><p role="status">{t('common.loading')}</p></main>;
  const c = detail.contact;
  const name = c.full_name || c.email || c.phone || c.id;
  const isAdmin = me.user.role === 'admin';
  return (
    <main class="page contact-page">
      <a href="/contacts" onClick={(e) => onLink(e, '/contacts')}>← {t('contacts.back')}</a>
      <h1>{name}</h1>
      <div class="grid2">
        <section class="card" aria-label={t('contacts.owner')}>
          <dl class="facts">
            <dt>{t('contacts.email')}</dt><dd>{c.email ?? '—'}</dd>
            <dt>{t('contacts.phone')}</dt><dd>{c.phone ?? '—'}</dd>
            <dt>{t('contacts.company')}</dt><dd>{c.company ?? '—'}</dd>
            <dt>{t('contacts.owner')}</dt>
            <dd>{c.owner_id ? (c.owner_id === me.user.id ? `${c.owner_id} (${t('common.me')})` : c.owner_id) : t('common.unowned')}</dd>
          </dl>
          <div class="actions">
            {!c.owner_id && <button type="button" onClick={() => void claim()}>{t('contacts.claim')}</button>}
            {c.phone && <a class="button" href={`/inbox/${id}`} onClick={(e) => onLink(e, `/inbox/${id}`)}>{t('contacts.openInbox')}</a>}
          </div>
          {isAdmin && (
            <form class="inline" onSubmit={(e) => { e.preventDefault(); if (assignee.trim()) void assign(assignee.trim()); }}>
              <label>{t('contacts.assignTo')}<input value={assignee} onInput={(e) => setAssignee(e.currentTarget.value)} /></label>
              <button type="submit">{t('contacts.assign')}</button>
            </form>
          )}
        </section>
        <section class="card" aria-labelledby="c-optouts">
          <h2 id="c-optouts">{t('contacts.optOuts')}</h2>
          <ul class="plain">
            {CHANNELS.map((ch) => {
              const o = detail.opt_outs.find((x) => x.channel === ch);
              return (
                <li key={ch}>
                  <strong>{t(`channel.${ch}` as Key)}</strong>: {o ? t('contacts.optedOut', { source: o.source ?? '—' }) : t('contacts.subscribed')}
                  {o?.created_at && <> · {f.dateTime(o.created_at)}</>}
                </li>
              );
            })}
          </ul>
        </section>
      </div>
      <section aria-labelledby="c-c2s">
        <h2 id="c-c2s">{t('contacts.enrichment')}</h2>
        {!c2s || c2s.leads.length === 0 ? (
          <p class="muted">{t('contacts.noEnrichment')}</p>
        ) : (
          <ul class="plain">
            {c2s.leads.map((l) => (
              <li key={l.lead_id} class="card">
                <strong>{t('contacts.c2sLead', { id: l.lead_id, matched: l.matched_by })}</strong>
                {l.customer_name && <> · {l.customer_name}</>}
                {l.seller_name && <> · {t('contacts.c2sSeller', { name: l.seller_name })}</>}
                {l.lead_status_name && <> · {l.lead_status_name}</>}
                <br />
                {l.enrichment && <span>{t('contacts.c2sStatus', { status: l.enrichment.status })}</span>}{' '}
                <span>{l.note.posted ? t('contacts.c2sNotePosted') : l.note.why ? t('contacts.c2sNoteNot', { why: l.note.why }) : ''}</span>
                {l.note_body && <p class="note-body">{l.note_body}</p>}
              </li>
            ))}
          </ul>
        )}
      </section>
      <section aria-labelledby="c-deals">
        <h2 id="c-deals">{t('contacts.deals')}</h2>
        <ul class="plain">
          {detail.deals.length === 0 && <li>{t('common.none')}</li>}
          {detail.deals.map((d) => (
            <li key={d.id}>
              <strong>{d.title}</strong> · {d.status}{d.value_cents != null && <> · {f.money(d.value_cents, d.currency)}</>} · {f.dateTime(d.created_at)}
            </li>
          ))}
        </ul>
      </section>
      <section aria-labelledby="c-timeline">
        <h2 id="c-timeline">{t('contacts.timeline')}</h2>
        <ol class="timeline">
          {detail.timeline.map((a) => (
            <li key={a.id} class={`act act-${a.type}`}>
              <time dateTime={a.occurred_at}>{f.dateTime(a.occurred_at)}</time>
              <strong>{t(`activity.${a.type}` as Key)}</strong>
              {a.body && <p>{a.body}</p>}
            </li>
          ))}
        </ol>
      </section>
    </main>
  );
}
