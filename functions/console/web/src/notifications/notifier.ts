/** New inbound messages while the console is open: toast, a short sound and,
 * when allowed, a browser notification; the inbox and badges refresh. */
import { api, unwrap, type FeedEvent } from '../api/client';
import { format, locale } from '../i18n';
import { Store } from '../store';
import { toast } from '../shell/toasts';
import { conversations$, refreshConversations } from '../inbox/conversations';
import { FeedPoller } from './poller';

/** The latest batch of feed events (threads listen to refresh their messages). */
export const feed$ = new Store<FeedEvent[]>([]);

let audio: AudioContext | null = null;

/** A short two-tone chime made with WebAudio (no file, nothing fetched). */
export function chime(): void {
  try {
    audio ??= new AudioContext();
    const now = audio.currentTime;
    for (const [i, hz] of [880, 1320].entries()) {
      const osc = audio.createOscillator();
      const gain = audio.createGain();
      osc.frequency.value = hz;
      gain.gain.setValueAtTime(0.0001, now + i * 0.12);
      gain.gain.exponentialRampToValueAtTime(0.2, now + i * 0.12 + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, now + i * 0.12 + 0.18);
      osc.connect(gain).connect(audio.destination);
      osc.start(now + i * 0.12);
      osc.stop(now + i * 0.12 + 0.2);
    }
  } catch {
    /* no audio device */
  }
}

async function announce(events: FeedEvent[]): Promise<void> {
  feed$.set(events);
  const inbound = events.filter((e) => e.kind === 'message_in');
  if (!inbound.length && !events.some((e) => e.kind === 'status')) return;
  await refreshConversations().catch(() => undefined);
  if (!inbound.length) return;
  const list = conversations$.get() ?? [];
  const l = locale.get();
  const seen = new Set<string>();
  for (const e of inbound) {
    if (!e.contact_id || seen.has(e.contact_id)) continue;
    seen.add(e.contact_id);
    const c = list.find((x) => x.contact_id === e.contact_id);
    // The feed answers only what the caller may see; a contact missing from
    // the list (another member's) is not announced either.
    if (!c) continue;
    const name = c.full_name || c.phone || '…';
    const title = format(l, 'notify.newMessage', { name });
    toast(title, 'info', `/inbox/${e.contact_id}`);
    if (typeof Notification !== 'undefined' && Notification.permission === 'granted') {
      try {
        const n = new Notification(title, { body: c.last_message?.preview ?? '', tag: e.contact_id, icon: '/favicon.svg' });
        n.onclick = () => window.focus();
      } catch {
        /* some browsers only allow notifications from a service worker */
      }
    }
  }
  chime();
}

let poller: FeedPoller<FeedEvent> | null = null;
const onVisibility = () => {
  if (document.visibilityState === 'visible') poller?.wake();
};

export function startNotifications(): void {
  if (poller) return;
  poller = new FeedPoller<FeedEvent>({
    fetchPage: async (after) => {
      const page = unwrap(await api.GET('/api/messages/events', { params: { query: { after, limit: 100 } } }));
      return { events: page.events ?? [], next_after: page.next_after ?? after, limit: page.limit ?? 100 };
    },
    onEvents: (e) => void announce(e),
  });
  poller.start();
  document.addEventListener('visibilitychange', onVisibility);
  void refreshConversations().catch(() => undefined);
}

export function stopNotifications(): void {
  poller?.stop();
  poller = null;
  document.removeEventListener('visibilitychange', onVisibility);
}
