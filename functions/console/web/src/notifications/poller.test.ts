import { describe, expect, it } from 'vitest';
import { FeedPoller, HIDDEN_MS, MAX_BACKOFF_MS, nextDelay, VISIBLE_MS, type FeedPage } from './poller';

describe('polling backoff', () => {
  it('is quick while visible, slow while hidden, doubling on failures up to a cap', () => {
    expect(nextDelay({ visible: true, failures: 0 })).toBe(VISIBLE_MS);
    expect(nextDelay({ visible: false, failures: 0 })).toBe(HIDDEN_MS);
    expect(nextDelay({ visible: true, failures: 1 })).toBe(2 * VISIBLE_MS);
    expect(nextDelay({ visible: true, failures: 2 })).toBe(4 * VISIBLE_MS);
    expect(nextDelay({ visible: true, failures: 50 })).toBe(MAX_BACKOFF_MS);
    expect(nextDelay({ visible: false, failures: 3 })).toBe(MAX_BACKOFF_MS);
  });
});

function harness(pages: (after: string) => FeedPage<number> | Error) {
  const timers: { fn: () => void; ms: number }[] = [];
  const calls: string[] = [];
  const seen: number[] = [];
  let visible = true;
  const p = new FeedPoller<number>({
    fetchPage: async (after) => {
      calls.push(after);
      const r = pages(after);
      if (r instanceof Error) throw r;
      return r;
    },
    onEvents: (e) => seen.push(...e),
    isVisible: () => visible,
    setTimer: (fn, ms) => { const t = { fn, ms }; timers.push(t); return t; },
    clearTimer: (t) => { const i = timers.indexOf(t as (typeof timers)[number]); if (i >= 0) timers.splice(i, 1); },
  });
  return { p, timers, calls, seen, setVisible: (v: boolean) => { visible = v; } };
}

describe('feed poller', () => {
  it('starts at now, then follows next_after, scheduling by visibility', async () => {
    const h = harness((after) => ({ events: after === 'now' ? [] : [1], next_after: after === 'now' ? 'c1' : 'c2', limit: 100 }));
    h.p.start();
    await new Promise((r) => setTimeout(r, 0));
    expect(h.calls).toEqual(['now']);
    expect(h.timers.at(-1)?.ms).toBe(VISIBLE_MS);
    h.setVisible(false);
    h.timers.shift()!.fn();
    await new Promise((r) => setTimeout(r, 0));
    expect(h.calls).toEqual(['now', 'c1']);
    expect(h.seen).toEqual([1]);
    expect(h.timers.at(-1)?.ms).toBe(HIDDEN_MS);
  });

  it('catches up page by page when the tab comes back', async () => {
    let n = 0;
    const h = harness((after) => {
      n++;
      if (after === 'now') return { events: [], next_after: 'p0', limit: 2 };
      const i = Number(after.slice(1));
      return { events: i < 2 ? [i * 2, i * 2 + 1] : [99], next_after: `p${i + 1}`, limit: 2 };
    });
    h.setVisible(false);
    h.p.start();
    await new Promise((r) => setTimeout(r, 0));
    expect(h.timers).toHaveLength(1);
    expect(h.timers[0]!.ms).toBe(HIDDEN_MS);
    h.setVisible(true);
    h.p.wake();
    await new Promise((r) => setTimeout(r, 0));
    // The slow timer was replaced; three pages drained at once (two full, one short).
    expect(h.seen).toEqual([0, 1, 2, 3, 99]);
    expect(h.p.cursor).toBe('p3');
    expect(n).toBe(4);
    expect(h.timers).toHaveLength(1);
    expect(h.timers[0]!.ms).toBe(VISIBLE_MS);
  });

  it('backs off after errors and keeps its cursor', async () => {
    let fail = true;
    const h = harness((after) => (fail && after !== 'now' ? new Error('503') : { events: [], next_after: 'x', limit: 100 }));
    h.p.start();
    await new Promise((r) => setTimeout(r, 0));
    h.timers.shift()!.fn();
    await new Promise((r) => setTimeout(r, 0));
    expect(h.timers.at(-1)?.ms).toBe(2 * VISIBLE_MS);
    h.timers.shift()!.fn();
    await new Promise((r) => setTimeout(r, 0));
    expect(h.timers.at(-1)?.ms).toBe(4 * VISIBLE_MS);
    expect(h.p.cursor).toBe('x');
    fail = false;
    h.timers.shift()!.fn();
    await new Promise((r) => setTimeout(r, 0));
    expect(h.timers.at(-1)?.ms).toBe(VISIBLE_MS);
    h.p.stop();
    expect(h.timers).toHaveLength(0);
  });
});
