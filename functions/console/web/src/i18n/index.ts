import { Store, useStore } from '../store';
import { en, tr, ptBR, type Catalogue, type Key } from './messages';

export type Locale = 'en' | 'tr' | 'pt-BR';
export const LOCALES: { id: Locale; label: string }[] = [
  { id: 'en', label: 'English' },
  { id: 'tr', label: 'Türkçe' },
  { id: 'pt-BR', label: 'Português (Brasil)' },
];
const CATALOGUES: Record<Locale, Catalogue> = { en, tr, 'pt-BR': ptBR };
const STORAGE_KEY = 'crm.locale';

/** The browser's first language we have, else English. */
export function pickLocale(preferred: readonly string[]): Locale {
  for (const raw of preferred) {
    const l = raw.toLowerCase();
    if (l.startsWith('tr')) return 'tr';
    if (l.startsWith('pt')) return 'pt-BR';
    if (l.startsWith('en')) return 'en';
  }
  return 'en';
}

function initial(): Locale {
  const saved = typeof localStorage !== 'undefined' ? localStorage.getItem(STORAGE_KEY) : null;
  if (saved === 'en' || saved === 'tr' || saved === 'pt-BR') return saved;
  return pickLocale(typeof navigator !== 'undefined' ? navigator.languages ?? [navigator.language] : []);
}

export const locale = new Store<Locale>(initial());

export function setLocale(l: Locale): void {
  localStorage.setItem(STORAGE_KEY, l);
  document.documentElement.lang = l;
  locale.set(l);
}

export type Vars = Record<string, string | number>;

export function format(l: Locale, key: Key, vars?: Vars): string {
  const text = CATALOGUES[l][key] ?? en[key];
  if (!vars) return text;
  return text.replace(/\{(\w+)\}/g, (m, name: string) =>
    name in vars ? String(vars[name]) : m,
  );
}

/** Formatting in the user's locale and time zone (the browser's). */
export function formatters(l: Locale) {
  const dateTime = new Intl.DateTimeFormat(l, { dateStyle: 'medium', timeStyle: 'short' });
  const time = new Intl.DateTimeFormat(l, { hour: '2-digit', minute: '2-digit' });
  const number = new Intl.NumberFormat(l);
  const rel = new Intl.RelativeTimeFormat(l, { numeric: 'auto' });
  return {
    dateTime: (iso: string | Date) => dateTime.format(typeof iso === 'string' ? new Date(iso) : iso),
    time: (iso: string | Date) => time.format(typeof iso === 'string' ? new Date(iso) : iso),
    number: (n: number) => number.format(n),
    money: (cents: number, currency: string | null | undefined) =>
      new Intl.NumberFormat(l, { style: 'currency', currency: currency || 'USD' }).format(cents / 100),
    /** "3 days", "5 hours": a duration in the largest whole unit. */
    duration: (ms: number) => {
      const units: [Intl.RelativeTimeFormatUnit, number][] = [
        ['day', 86_400_000],
        ['hour', 3_600_000],
        ['minute', 60_000],
      ];
      for (const [unit, size] of units) {
        if (ms >= size || unit === 'minute') {
          const n = Math.max(0, Math.floor(ms / size));
          return new Intl.NumberFormat(l, { style: 'unit', unit, unitDisplay: 'long' }).format(n);
        }
      }
      return '';
    },
    relative: (iso: string) => {
      const diff = (new Date(iso).getTime() - Date.now()) / 1000;
      const abs = Math.abs(diff);
      if (abs < 60) return rel.format(Math.round(diff), 'second');
      if (abs < 3600) return rel.format(Math.round(diff / 60), 'minute');
      if (abs < 86400) return rel.format(Math.round(diff / 3600), 'hour');
      return rel.format(Math.round(diff / 86400), 'day');
    },
  };
}

/** The current locale's translate function and formatters; re-renders on switch. */
export function useI18n() {
  const l = useStore(locale);
  return { locale: l, t: (key: Key, vars?: Vars) => format(l, key, vars), f: formatters(l) };
}

export type { Key };
