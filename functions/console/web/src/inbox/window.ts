/** WhatsApp's 24-hour customer-service window: free text is allowed until
 * 24 h after the contact's last WhatsApp message; after that only
 * approved templates. SMS has no window. */

export const WINDOW_MS = 24 * 60 * 60 * 1000;

export type WindowState =
  | { kind: 'open'; until: Date }
  | { kind: 'closed'; until: Date }
  | { kind: 'never' };

interface MessageLike {
  direction?: 'in' | 'out';
  channel?: 'sms' | 'whatsapp';
  created_at?: string;
}

/** The window's end from the contact's messages (any order). */
export function windowUntil(messages: readonly MessageLike[]): Date | null {
  let last = -Infinity;
  for (const m of messages) {
    if (m.direction === 'in' && m.channel === 'whatsapp' && m.created_at) {
      last = Math.max(last, new Date(m.created_at).getTime());
    }
  }
  return Number.isFinite(last) ? new Date(last + WINDOW_MS) : null;
}

/** The state at `now`, from the server's `window_open_until` (or windowUntil). */
export function windowState(until: Date | string | null | undefined, now: Date): WindowState {
  if (until === null || until === undefined) return { kind: 'never' };
  const u = typeof until === 'string' ? new Date(until) : until;
  return u.getTime() > now.getTime() ? { kind: 'open', until: u } : { kind: 'closed', until: u };
}

/** Whether free text may go out on this channel now. */
export function canSendFreeText(channel: 'sms' | 'whatsapp', state: WindowState): boolean {
  return channel === 'sms' || state.kind === 'open';
}

/** Milliseconds until the state changes by itself (the composer re-renders then), or null. */
export function msUntilChange(state: WindowState, now: Date): number | null {
  return state.kind === 'open' ? Math.max(0, state.until.getTime() - now.getTime()) : null;
}
