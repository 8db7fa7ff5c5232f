import { describe, expect, it } from 'vitest';
import { canSendFreeText, msUntilChange, WINDOW_MS, windowState, windowUntil } from './window';

const at = (iso: string) => new Date(iso);

describe('WhatsApp 24-hour window', () => {
  const msgs = [
    { direction: 'in' as const, channel: 'whatsapp' as const, created_at: '2026-12-01T08:00:00Z' },
    { direction: 'out' as const, channel: 'whatsapp' as const, created_at: '2026-12-01T12:00:00Z' },
    { direction: 'in' as const, channel: 'sms' as const, created_at: '2026-12-01T13:00:00Z' },
    { direction: 'in' as const, channel: 'whatsapp' as const, created_at: '2026-12-01T10:00:00Z' },
  ];

  it('ends 24 h after the last inbound WhatsApp message (our replies and SMS do not count)', () => {
    expect(windowUntil(msgs)?.toISOString()).toBe('2026-12-02T10:00:00.000Z');
    expect(windowUntil(msgs.filter((m) => m.channel === 'sms'))).toBeNull();
  });

  it('is open before the end, closed at and after it', () => {
    const until = '2026-12-02T10:00:00Z';
    expect(windowState(until, at('2026-12-02T09:59:59Z')).kind).toBe('open');
    expect(windowState(until, at('2026-12-02T10:00:00Z')).kind).toBe('closed');
    expect(windowState(null, at('2026-12-02T10:00:00Z')).kind).toBe('never');
  });

  it('free text only inside the window on WhatsApp, always on SMS', () => {
    const now = at('2026-12-03T00:00:00Z');
    const closed = windowState('2026-12-02T10:00:00Z', now);
    expect(canSendFreeText('whatsapp', closed)).toBe(false);
    expect(canSendFreeText('sms', closed)).toBe(true);
    expect(canSendFreeText('whatsapp', windowState(new Date(now.getTime() + WINDOW_MS), now))).toBe(true);
    expect(canSendFreeText('whatsapp', { kind: 'never' })).toBe(false);
  });

  it('says when the composer must change by itself', () => {
    const now = at('2026-12-02T09:00:00Z');
    expect(msUntilChange(windowState('2026-12-02T10:00:00Z', now), now)).toBe(3_600_000);
    expect(msUntilChange({ kind: 'never' }, now)).toBeNull();
  });
});
