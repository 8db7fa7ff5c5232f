import { useEffect } from 'preact/hooks';
import { LOCALES, setLocale, useI18n, type Locale } from '../i18n';
import { logout, refresh, rememberReturnTo, session$ } from '../api/session';
import { useStore } from '../store';
import { match, navigate, onLink, useLocation } from '../router';
import { SignIn, SetPassword } from '../signin/SignIn';
import { Board } from '../board/Board';
import { Contacts } from '../contacts/Contacts';
import { ContactPage } from '../contacts/ContactPage';
import { Inbox } from '../inbox/Inbox';
import { Toaster } from './toasts';
import { conversations$, totalUnread } from '../inbox/conversations';
import { startNotifications, stopNotifications } from '../notifications/notifier';

function LanguagePicker() {
  const { t, locale } = useI18n();
  return (
    <label class="lang">
      <span class="sr-only">{t('lang.label')}</span>
      <select aria-label={t('lang.label')} value={locale} onChange={(e) => setLocale(e.currentTarget.value as Locale)}>
        {LOCALES.map((l) => (
          <option key={l.id} value={l.id}>{l.label}</option>
        ))}
      </select>
    </label>
  );
}

function NavLink({ to, label, current, badge }: { to: string; label: string; current: boolean; badge?: string | undefined }) {
  return (
    <a href={to} aria-current={current ? 'page' : undefined} onClick={(e) => onLink(e, to)}>
      {label}
      {badge}
    </a>
  );
}

function UnreadBadge() {
  const { t, f } = useI18n();
  const n = totalUnread(useStore(conversations$));
  if (!n) return null;
  return <span class="badge" role="status" aria-label={t('nav.unread', { count: n })}>{f.number(n)}</span>;
}

export function App() {
  const s = useStore(session$);
  const { path, query } = useLocation();
  const { t } = useI18n();

  useEffect(() => {
    if (session$.get() === undefined) void refresh().then((r) => { if (!r) session$.set(null); });
  }, []);
  useEffect(() => {
    if (s) startNotifications();
    else stopNotifications();
  }, [!!s]);

  if (path === '/set-password') return <><SetPassword token={query.get('token')} /><Toaster /></>;
  if (s === undefined) return <p class="boot" role="status">{t('common.loading')}</p>;
  if (s === null) {
    if (path !== '/sign-in') {
      rememberReturnTo(path + (query.toString() ? `?${query}` : ''));
      navigate('/sign-in', true);
    }
    return <><header class="topbar slim"><span class="brand">{t('app.name')}</span><LanguagePicker /></header><SignIn /></>;
  }
  if (path === '/' || path === '/sign-in') {
    navigate('/board', true);
    return null;
  }

  let screen;
  let p: Record<string, string> | null;
  if (path === '/board') screen = <Board />;
  else if (path === '/contacts') screen = <Contacts />;
  else if ((p = match('/contacts/:id', path))) screen = <ContactPage id={p.id!} />;
  else if (path === '/inbox') screen = <Inbox contactId={null} />;
  else if ((p = match('/inbox/:id', path))) screen = <Inbox contactId={p.id!} />;
  else screen = <main class="page"><h1>404</h1></main>;

  return (
    <>
      <header class="topbar">
        <span class="brand">{t('app.name')}</span>
        <nav aria-label={t('nav.main')}>
          <NavLink to="/board" label={t('nav.board')} current={path.startsWith('/board')} />
          <NavLink to="/contacts" label={t('nav.contacts')} current={path.startsWith('/contacts')} />
          <a href="/inbox" aria-current={path.startsWith('/inbox') ? 'page' : undefined} onClick={(e) => onLink(e, '/inbox')}>
            {t('nav.inbox')} <UnreadBadge />
          </a>
        </nav>
        <span class="spacer" />
        <LanguagePicker />
        <span class="who">{t('auth.signedInAs', { name: s.user.name || s.user.email })}</span>
        <button type="button" onClick={() => void logout().then(() => navigate('/sign-in'))}>{t('auth.signOut')}</button>
      </header>
      {screen}
      <Toaster />
    </>
  );
}
