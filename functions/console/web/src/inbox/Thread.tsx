import { useEffect, useRef, useState } from 'preact/hooks';
import { api, rawJson, reason, unwrap, type Message } from '../api/client';
import type { MediaLink } from '../api/pending';
import { useI18n, type Key } from '../i18n';
import { feed$ } from '../notifications/notifier';
import { toast } from '../shell/toasts';
import { markedRead, refreshConversations, type Conversation } from './conversations';
import { Composer } from './Composer';
import { windowState, windowUntil } from './window';
import { ClockIcon } from '../shell/icons';


/** The tick a status shows, and its accessible name. */
export function tick(status: Message['status']): { icon: string; key: Key; cls: string } {
  switch (status) {
    case 'delivered':
      return { icon: '✓✓', key: 'status.delivered', cls: 'delivered' };
    case 'read':
      return { icon: '✓✓', key: 'status.read', cls: 'read' };
    case 'sent':
      return { icon: '✓', key: 'status.sent', cls: 'sent' };
    case 'failed':
    case 'undelivered':
    case 'canceled':
      return { icon: '!', key: 'status.failed', cls: 'failed' };
    case 'received':
      return { icon: '', key: 'status.received', cls: 'received' };
    default:
      return { icon: 'clock', key: 'status.queued', cls: 'queued' };
  }
}

export function Thread({ contactId, conversation }: { contactId: string; conversation: Conversation | null }) {
  const { t, f } = useI18n();
  const [messages, setMessages] = useState<Message[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [name, setName] = useState<string>(conversation?.full_name || conversation?.phone || '');
  const [phone, setPhone] = useState<string | null>(conversation?.phone ?? null);
  const end = useRef<HTMLDivElement>(null);

  const load = async () => {
    try {
      const page = unwrap(await api.GET('/api/contacts/{id}/messages', { params: { path: { id: contactId }, query: { limit: 100 } } }));
      setMessages([...(page.messages ?? [])].reverse());
    } catch (e) {
      setError(reason(e));
    }
  };

  useEffect(() => {
    void load();
    if (!name) {
      api.GET('/crm/contacts/{id}', { params: { path: { id: contactId } } }).then((r) => {
        if (r.data) {
          setName(r.data.contact.full_name || r.data.contact.phone || contactId);
          setPhone(r.data.contact.phone ?? null);
        }
      });
    }
    rawJson('POST', `/api/conversations/${contactId}/read`).then(() => markedRead(contactId)).catch(() => undefined);
  }, [contactId]);

  // Feed events for this contact: new messages and status callbacks.
  useEffect(
    () =>
      feed$.subscribe((events) => {
        if (events.some((e) => e.contact_id === contactId)) {
          void load();
          if (events.some((e) => e.contact_id === contactId && e.kind === 'message_in') && document.visibilityState === 'visible') {
            rawJson('POST', `/api/conversations/${contactId}/read`).then(() => markedRead(contactId)).catch(() => undefined);
          }
        }
      }),
    [contactId],
  );

  useEffect(() => end.current?.scrollIntoView?.({ block: 'end' }), [messages?.length]);

  const flag = async (m: Message, patch: { is_read?: boolean; is_starred?: boolean }) => {
    try {
      const updated = unwrap(await api.PATCH('/api/messages/{id}', { params: { path: { id: m.id! } }, body: patch }));
      setMessages((messages ?? []).map((x) => (x.id === m.id ? { ...x, ...updated } : x)));
      void refreshConversations().catch(() => undefined);
    } catch (e) {
      toast(reason(e), 'error');
    }
  };

  const until = conversation?.window_open_until ?? (messages ? windowUntil(messages)?.toISOString() ?? null : null);
  const state = windowState(until, new Date());
  const lastChannel = conversation?.last_message.channel ?? messages?.at(-1)?.channel ?? 'whatsapp';
  const title = name || phone || contactId;

  return (
    <section class="thread" aria-label={t('inbox.thread', { name: title })}>
      <header class="thread-head">
        <h2>{title}</h2>
        {phone && <span class="muted">{phone}</span>}
        <p class={`window window-${state.kind}`} role="note">
          {state.kind === 'open'
            ? t('inbox.windowOpen', { until: f.dateTime(state.until) })
            : state.kind === 'closed'
              ? t('inbox.windowClosed', { when: f.dateTime(new Date(state.until.getTime() - 86_400_000)) })
              : t('inbox.windowNever')}
        </p>
      </header>
      <div class="bubbles" role="log" aria-live="polite">
        {error && <p class="error" role="alert">{error}</p>}
        {!messages && <p role="status">{t('common.loading')}</p>}
        {messages?.map((m) => {
          const tk = tick(m.status);
          const mine = m.direction === 'out';
          const when = m.created_at ? f.dateTime(m.created_at) : '';
          return (
            <article key={m.id} class={`bubble ${mine ? 'out' : 'in'}${m.is_starred ? ' starred' : ''}`}
              aria-label={`${t(mine ? 'inbox.from.us' : 'inbox.from.contact')}, ${when}`}>
              {m.body && <p class="body">{m.body}</p>}
              <Media message={m} />
              {m.error_message && <p class="err">{m.error_message}</p>}
              <footer>
                <span class={`chan chan-${m.channel}`}>{t(`channel.${m.channel ?? 'sms'}` as Key)}</span>
                <time dateTime={m.created_at}>{m.created_at ? f.time(m.created_at) : ''}</time>
                {mine && <span class={`tick tick-${tk.cls}`} role="img" aria-label={t(tk.key)}>{tk.icon === 'clock' ? <ClockIcon /> : tk.icon}</span>}
                <button type="button" class="icon" aria-pressed={!!m.is_starred} aria-label={t(m.is_starred ? 'inbox.unstar' : 'inbox.star')}
                  onClick={() => void flag(m, { is_starred: !m.is_starred })}>{m.is_starred ? '★' : '☆'}</button>
                {!mine && (
                  <button type="button" class="icon" aria-label={t(m.is_read ? 'inbox.markUnread' : 'inbox.markRead')}
                    onClick={() => void flag(m, { is_read: !m.is_read })}>{m.is_read ? '●' : '○'}</button>
                )}
              </footer>
            </article>
          );
        })}
        <div ref={end} />
      </div>
      <Composer contactId={contactId} contactName={title} defaultChannel={lastChannel} window={state} onSent={() => void load()} />
    </section>
  );
}

function Media({ message }: { message: Message }) {
  const { t } = useI18n();
  const count = message.direction === 'out' ? (message.media_key ? 1 : 0) : message.num_media ?? 0;
  if (!count || !message.id) return null;
  const indexes = message.direction === 'out' ? [0] : Array.from({ length: count }, (_, i) => i);
  return (
    <div class="media">
      {indexes.map((i, n) => <MediaItem key={i} id={message.id!} index={i} label={t('inbox.media', { n: n + 1 })} />)}
    </div>
  );
}

function MediaItem({ id, index, label }: { id: string; index: number; label: string }) {
  const { t } = useI18n();
  const [link, setLink] = useState<MediaLink | null>(null);
  const [state, setState] = useState<'loading' | 'pending' | 'error'>('loading');
  useEffect(() => {
    rawJson<MediaLink>('GET', `/api/messages/${id}/media/${index}`)
      .then(setLink)
      .catch((e: unknown) => setState((e as { code?: string }).code === 'media_pending' ? 'pending' : 'error'));
  }, [id, index]);
  if (!link) return <span class="muted">{state === 'pending' ? t('inbox.mediaPending') : state === 'loading' ? t('common.loading') : label}</span>;
  if (link.content_type.startsWith('image/')) {
    return (
      <a href={link.url} target="_blank" rel="noopener" aria-label={t('inbox.openMedia', { n: index + 1 })}>
        <img src={link.url} alt={label} loading="lazy" />
      </a>
    );
  }
  return <a href={link.url} target="_blank" rel="noopener">{t('inbox.openMedia', { n: index + 1 })}</a>;
}
