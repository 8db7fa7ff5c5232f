import { useEffect, useState } from 'preact/hooks';
import { reason } from '../api/client';
import { useI18n, type Key } from '../i18n';
import { onLink } from '../router';
import { useStore } from '../store';
import { conversations$, refreshConversations } from './conversations';
import { Thread } from './Thread';

export function Inbox({ contactId }: { contactId: string | null }) {
  const { t, f } = useI18n();
  const list = useStore(conversations$);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => void refreshConversations().then(() => setError(null), (e: unknown) => setError(reason(e))), []);
  const current = list?.find((c) => c.contact_id === contactId) ?? null;
  return (
    <main class="page inbox">
      <nav class="conversations" aria-label={t('inbox.conversations')}>
        <h1>{t('inbox.title')}</h1>
        {error && !list ? (
          <p class="error" role="alert">{t('common.error', { reason: error })}</p>
        ) : !list ? (
          <p role="status">{t('common.loading')}</p>
        ) : list.length === 0 ? (
          <p>{t('inbox.empty')}</p>
        ) : (
          <ul>
            {list.map((c) => {
              const name = c.full_name || c.phone || c.contact_id;
              const to = `/inbox/${c.contact_id}`;
              return (
                <li key={c.contact_id}>
                  <a href={to} onClick={(e) => onLink(e, to)} aria-current={c.contact_id === contactId ? 'page' : undefined}
                    class={c.unread_count ? 'conv unread' : 'conv'}>
                    <span class="conv-top">
                      <span class="conv-name">{name}</span>
                      <time dateTime={c.last_message.created_at}>{f.relative(c.last_message.created_at)}</time>
                    </span>
                    <span class="conv-bottom">
                      <span class={`chan chan-${c.last_message.channel}`}>{t(`channel.${c.last_message.channel}` as Key)}</span>
                      <span class="conv-preview">{c.last_message.preview ?? (c.last_message.num_media ? t('inbox.media', { n: 1 }) : '')}</span>
                      {c.unread_count > 0 && (
                        <span class="badge" aria-label={t('inbox.unreadBadge', { count: c.unread_count })}>{f.number(c.unread_count)}</span>
                      )}
                    </span>
                  </a>
                </li>
              );
            })}
          </ul>
        )}
      </nav>
      <div class="thread-pane">
        {contactId ? <Thread key={contactId} contactId={contactId} conversation={current} /> : <p class="pick">{t('inbox.pick')}</p>}
      </div>
    </main>
  );
}
