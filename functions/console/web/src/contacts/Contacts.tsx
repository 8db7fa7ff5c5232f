import { useEffect, useState } from 'preact/hooks';
import { api, reason, unwrap, type Contact } from '../api/client';
import { useI18n } from '../i18n';
import { onLink, navigate, useLocation } from '../router';

export function Contacts() {
  const { t } = useI18n();
  const { query } = useLocation();
  const [q, setQ] = useState(query.get('q') ?? '');
  const [list, setList] = useState<Contact[] | null>(null);
  const [next, setNext] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    const id = setTimeout(async () => {
      try {
        const r = unwrap(await api.GET('/crm/contacts', { params: { query: { ...(q.trim() ? { q: q.trim() } : {}), limit: 50 } } }));
        setList(r.contacts);
        setNext(r.next_cursor);
        setError(null);
        navigate(q.trim() ? `/contacts?q=${encodeURIComponent(q.trim())}` : '/contacts', true);
      } catch (e) {
        setError(reason(e));
      }
    }, 250);
    return () => clearTimeout(id);
  }, [q]);

  const more = async () => {
    if (!next) return;
    const r = unwrap(await api.GET('/crm/contacts', { params: { query: { ...(q.trim() ? { q: q.trim() } : {}), cursor: next, limit: 50 } } }));
    setList([...(list ?? []), ...r.contacts]);
    setNext(r.next_cursor);
  };

  return (
    <main class="page">
      <h1>{t('contacts.title')}</h1>
      <input type="search" class="search" aria-label={t('contacts.search')} placeholder={t('contacts.searchHint')}
        value={q} onInput={(e) => setQ(e.currentTarget.value)} />
      {error && <p class="error" role="alert">{error}</p>}
      {!list ? (
        <p role="status">{t('common.loading')}</p>
      ) : list.length === 0 ? (
        <p>{t('contacts.none')}</p>
      ) : (
        <table class="table">
          <thead>
            <tr><th>{t('contacts.name')}</th><th>{t('contacts.email')}</th><th>{t('contacts.phone')}</th><th>{t('contacts.company')}</th><th>{t('contacts.owner')}</th></tr>
          </thead>
          <tbody>
            {list.map((c) => (
              <tr key={c.id}>
                <td><a href={`/contacts/${c.id}`} onClick={(e) => onLink(e, `/contacts/${c.id}`)}>{c.full_name || c.email || c.phone || c.id}</a></td>
                <td>{c.email}</td>
                <td>{c.phone}</td>
                <td>{c.company}</td>
                <td>{c.owner_id ?? t('common.unowned')}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {next && <button type="button" onClick={() => void more()}>{t('common.loadMore')}</button>}
    </main>
  );
}
