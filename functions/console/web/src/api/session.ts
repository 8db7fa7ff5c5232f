import { Store } from '../store';
import type { TokenAnswer, User } from './pending';

export interface Session {
  token: string;
  /** Epoch ms at which the access token expires. */
  expiresAt: number;
  user: User;
}

/** `undefined`: not yet known (the silent refresh at start is running). */
export const session$ = new Store<Session | null | undefined>(undefined);
/** Set when a session ended under the user (expired, revoked): the sign-in page says so. */
export const expired$ = new Store<boolean>(false);

const RETURN_KEY = 'crm.returnTo';
/** Refresh this long before the access token expires. */
export const REFRESH_EARLY_MS = 60_000;

let timer: ReturnType<typeof setTimeout> | undefined;
let inflight: Promise<Session | null> | null = null;

export class AuthFailure extends Error {
  constructor(
    message: string,
    readonly code: string,
    readonly status: number,
  ) {
    super(message);
  }
}

/** When to refresh a token that expires in `expiresInS` seconds (never sooner than 5 s). */
export function refreshDelay(expiresInS: number): number {
  return Math.max(5_000, expiresInS * 1000 - REFRESH_EARLY_MS);
}

function accept(a: TokenAnswer): Session {
  const s: Session = { token: a.access_token, expiresAt: Date.now() + a.expires_in * 1000, user: a.user };
  session$.set(s);
  expired$.set(false);
  clearTimeout(timer);
  timer = setTimeout(() => void refresh(), refreshDelay(a.expires_in));
  return s;
}

async function post(path: string, body?: unknown): Promise<Response> {
  return fetch(path, {
    method: 'POST',
    credentials: 'same-origin',
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? null : JSON.stringify(body),
  });
}

async function failure(r: Response): Promise<AuthFailure> {
  let msg = r.statusText || String(r.status);
  let code = 'http_' + r.status;
  try {
    const j = (await r.json()) as { error?: string; code?: string };
    if (j.error) msg = j.error;
    if (j.code) code = j.code;
  } catch {
    /* not JSON */
  }
  return new AuthFailure(msg, code, r.status);
}

export async function login(email: string, password: string): Promise<Session> {
  const r = await post('/api/v1/auth/login', { email, password });
  if (!r.ok) throw await failure(r);
  return accept((await r.json()) as TokenAnswer);
}

/** Trades the HttpOnly refresh cookie for a new access token; null when there is no session. */
export function refresh(): Promise<Session | null> {
  if (inflight) return inflight;
  inflight = (async () => {
    try {
      const r = await post('/api/v1/auth/refresh');
      if (!r.ok) return null;
      return accept((await r.json()) as TokenAnswer);
    } catch {
      return null;
    } finally {
      inflight = null;
    }
  })();
  return inflight;
}

export async function logout(): Promise<void> {
  clearTimeout(timer);
  try {
    await post('/api/v1/auth/logout');
  } finally {
    sessionStorage.removeItem(RETURN_KEY);
    session$.set(null);
  }
}

/** The session ended under the user: remember where they were, show sign-in. */
export function sessionExpired(): void {
  clearTimeout(timer);
  const here = window.location.pathname + window.location.search;
  if (!here.startsWith('/sign-in')) sessionStorage.setItem(RETURN_KEY, here);
  expired$.set(true);
  session$.set(null);
}

/** Where to go after signing in: the page the session expired on, else the board. */
export function takeReturnTo(): string {
  const to = sessionStorage.getItem(RETURN_KEY);
  sessionStorage.removeItem(RETURN_KEY);
  return to && to.startsWith('/') && !to.startsWith('//') ? to : '/board';
}

export function rememberReturnTo(path: string): void {
  if (!path.startsWith('/sign-in') && path !== '/') sessionStorage.setItem(RETURN_KEY, path);
}
