import { useState } from 'preact/hooks';
import { useI18n } from '../i18n';
import { AuthFailure, expired$, login, takeReturnTo } from '../api/session';
import { useStore } from '../store';
import { navigate } from '../router';

export function SignIn() {
  const { t } = useI18n();
  const expired = useStore(expired$);
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await login(email.trim(), password);
      navigate(takeReturnTo(), true);
    } catch (err) {
      setError(err instanceof AuthFailure ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  };

  return (
    <main class="signin">
      <form class="card signin-card" onSubmit={submit} aria-labelledby="signin-title">
        <h1 id="signin-title">{t('auth.signIn')}</h1>
        {expired && <p class="notice" role="status">{t('auth.expired')}</p>}
        <label>
          {t('auth.email')}
          <input type="email" name="email" autoComplete="username" required value={email}
            onInput={(e) => setEmail(e.currentTarget.value)} />
        </label>
        <label>
          {t('auth.password')}
          <input type="password" name="password" autoComplete="current-password" required value={password}
            onInput={(e) => setPassword(e.currentTarget.value)} />
        </label>
        {error && <p class="error" role="alert">{t('auth.failed', { reason: error })}</p>}
        <button type="submit" class="primary" disabled={busy}>{t('auth.signIn')}</button>
      </form>
    </main>
  );
}

export function SetPassword({ token }: { token: string | null }) {
  const { t } = useI18n();
  const [password, setPassword] = useState('');
  const [state, setState] = useState<'idle' | 'done' | { error: string }>('idle');
  const submit = async (e: Event) => {
    e.preventDefault();
    const r = await fetch('/api/v1/auth/set-password', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ token, password }),
    });
    if (r.ok) setState('done');
    else {
      const j = (await r.json().catch(() => ({}))) as { error?: string };
      setState({ error: j.error ?? r.statusText });
    }
  };
  return (
    <main class="signin">
      <form class="card signin-card" onSubmit={submit} aria-labelledby="setpw-title">
        <h1 id="setpw-title">{t('auth.setPassword')}</h1>
        {!token ? (
          <p class="error" role="alert">{t('auth.missingToken')}</p>
        ) : state === 'done' ? (
          <p role="status">
            {t('auth.passwordSet')} <a href="/sign-in" onClick={(e) => { e.preventDefault(); navigate('/sign-in'); }}>{t('auth.signIn')}</a>
          </p>
        ) : (
          <>
            <label>
              {t('auth.newPassword')}
              <input type="password" autoComplete="new-password" required minLength={8} value={password}
                onInput={(e) => setPassword(e.currentTarget.value)} />
            </label>
            {typeof state === 'object' && <p class="error" role="alert">{state.error}</p>}
            <button type="submit" class="primary">{t('auth.setPassword')}</button>
          </>
        )}
      </form>
    </main>
  );
}
