import { describe, expect, it } from 'vitest';
import { format, formatters, pickLocale } from './index';
import { en, ptBR, tr } from './messages';

describe('i18n', () => {
  it('follows the browser languages, English otherwise', () => {
    expect(pickLocale(['pt-BR', 'en'])).toBe('pt-BR');
    expect(pickLocale(['pt-PT'])).toBe('pt-BR');
    expect(pickLocale(['de-DE', 'tr-TR'])).toBe('tr');
    expect(pickLocale(['de-DE'])).toBe('en');
    expect(pickLocale([])).toBe('en');
  });

  it('has every key in every language, with the same placeholders', () => {
    const vars = (s: string) => [...s.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort();
    for (const key of Object.keys(en) as (keyof typeof en)[]) {
      for (const cat of [tr, ptBR]) {
        expect(cat[key], key).toBeTruthy();
        expect(vars(cat[key]), key).toEqual(vars(en[key]));
      }
    }
  });

  it('interpolates and formats in the locale', () => {
    expect(format('tr', 'board.moved', { title: 'X', stage: 'Kazanıldı' })).toBe('X, Kazanıldı aşamasına taşındı');
    expect(formatters('pt-BR').money(123456, 'BRL')).toMatch(/R\$\s?1\.234,56/);
    expect(formatters('tr').number(1234.5)).toBe('1.234,5');
  });
});
