import createClient from 'openapi-fetch';
import type { components, paths } from './schema';
import { refresh, session$, sessionExpired } from './session';

export type Schemas = components['schemas'];
export type Deal = Schemas['Deal'];
export type Stage = Schemas['Stage'];
export type Pipeline = Schemas['Pipeline'];
export type BoardColumn = Schemas['BoardColumn'];
export type Contact = Schemas['Contact'];
export type ContactDetail = Schemas['ContactDetail'];
export type Activity = Schemas['Activity'];
export type Message = Schemas['Message'];
export type MessageFeed = Schemas['MessageFeed'];
export type FeedEvent = NonNullable<MessageFeed['events']>[number];
export type ApiErrorBody = Schemas['Error'];

/** An API answer that was not 2xx, with the server's own message. */
export class ApiFailure extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly code: string,
    readonly field?: string,
  ) {
    super(message);
  }
}

/** fetch with the bearer token; one silent refresh and retry on 401. */
export async function authFetch(input: Request): Promise<Response> {
  const retry = input.clone();
  const withToken = (req: Request) => {
    const s = session$.get();
    if (s) req.headers.set('authorization', `Bearer ${s.token}`);
    return fetch(req);
  };
  const first = await withToken(input);
  if (first.status !== 401) return first;
  const renewed = await refresh();
  if (!renewed) {
    sessionExpired();
    return first;
  }
  const second = await withToken(retry);
  if (second.status === 401) sessionExpired();
  return second;
}

export const api = createClient<paths>({
  baseUrl: typeof window !== 'undefined' ? window.location.origin : 'http://localhost',
  fetch: authFetch,
  credentials: 'same-origin',
});

/** Throws the server's error as an ApiFailure, or answers the data. */
export function unwrap<T>(r: { data?: T; error?: unknown; response: Response }): T {
  if (r.response.ok && r.data !== undefined) return r.data;
  if (r.response.ok) return undefined as T;
  const e = (r.error ?? {}) as Partial<ApiErrorBody>;
  throw new ApiFailure(e.error ?? r.response.statusText ?? 'error', r.response.status, e.code ?? 'http_' + r.response.status, e.field);
}

/** JSON call for a route not yet in openapi.json (see pending.ts). */
export async function rawJson<T>(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<T> {
  const req = new Request(new URL(path, window.location.origin), {
    method,
    credentials: 'same-origin',
    headers: { accept: 'application/json', ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
    body: body === undefined ? null : JSON.stringify(body),
  });
  const r = await authFetch(req);
  const text = await r.text();
  const json = text ? (JSON.parse(text) as unknown) : undefined;
  if (!r.ok) {
    const e = (json ?? {}) as Partial<ApiErrorBody>;
    throw new ApiFailure(e.error ?? r.statusText, r.status, e.code ?? 'http_' + r.status, e.field);
  }
  return json as T;
}

export function reason(e: unknown): string {
  if (e instanceof ApiFailure) return e.message;
  if (e instanceof Error) return e.message;
  return String(e);
}
