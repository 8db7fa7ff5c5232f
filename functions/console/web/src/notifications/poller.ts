/** Polls the durable message feed from "now": every few seconds while the
 * tab is visible, slowly while hidden, at once when it comes back (then
 * page by page until caught up), backing off on errors. */

export interface FeedPage<E> {
  events: E[];
  next_after: string;
  limit: number;
}

export interface PollerOptions<E> {
  /** after = 'now' on the first call. */
  fetchPage: (after: string) => Promise<FeedPage<E>>;
  onEvents: (events: E[]) => void;
  visibleMs?: number;
  hiddenMs?: number;
  maxBackoffMs?: number;
  isVisible?: () => boolean;
  setTimer?: (fn: () => void, ms: number) => unknown;
  clearTimer?: (t: unknown) => void;
}

export const VISIBLE_MS = 3_000;
export const HIDDEN_MS = 30_000;
export const MAX_BACKOFF_MS = 60_000;

/** The wait before the next poll. */
export function nextDelay(
  o: { visible: boolean; failures: number },
  visibleMs = VISIBLE_MS,
  hiddenMs = HIDDEN_MS,
  maxMs = MAX_BACKOFF_MS,
): number {
  const base = o.visible ? visibleMs : hiddenMs;
  if (o.failures <= 0) return base;
  return Math.min(maxMs, base * 2 ** Math.min(o.failures, 10));
}

export class FeedPoller<E> {
  private after = 'now';
  private failures = 0;
  private timer: unknown = null;
  private running = false;
  private stopped = true;
  private readonly o: Required<PollerOptions<E>>;

  constructor(opts: PollerOptions<E>) {
    this.o = {
      visibleMs: VISIBLE_MS,
      hiddenMs: HIDDEN_MS,
      maxBackoffMs: MAX_BACKOFF_MS,
      isVisible: () => typeof document === 'undefined' || document.visibilityState === 'visible',
      setTimer: (fn, ms) => setTimeout(fn, ms),
      clearTimer: (t) => clearTimeout(t as ReturnType<typeof setTimeout>),
      ...opts,
    };
  }

  get cursor(): string {
    return this.after;
  }

  start(): void {
    this.stopped = false;
    void this.tick();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) this.o.clearTimer(this.timer);
    this.timer = null;
  }

  /** The tab became visible again: poll now instead of waiting out the slow timer. */
  wake(): void {
    if (this.stopped) return;
    if (this.timer !== null) this.o.clearTimer(this.timer);
    this.timer = null;
    void this.tick();
  }

  /** One poll: pages until a short page (caught up), then schedules the next. */
  async tick(): Promise<void> {
    if (this.running || this.stopped) return;
    this.running = true;
    try {
      for (let pages = 0; pages < 20; pages++) {
        const page = await this.o.fetchPage(this.after);
        this.after = page.next_after;
        if (page.events.length) this.o.onEvents(page.events);
        if (page.events.length < page.limit) break;
      }
      this.failures = 0;
    } catch {
      this.failures += 1;
    } finally {
      this.running = false;
    }
    if (!this.stopped) {
      const ms = nextDelay({ visible: this.o.isVisible(), failures: this.failures }, this.o.visibleMs, this.o.hiddenMs, this.o.maxBackoffMs);
      this.timer = this.o.setTimer(() => {
        this.timer = null;
        void this.tick();
      }, ms);
    }
  }
}
