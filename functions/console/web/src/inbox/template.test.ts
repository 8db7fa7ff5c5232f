import { describe, expect, it } from 'vitest';
import { placeholderCount, renderTemplate } from './template';

describe('template preview', () => {
  it('fills the name and the typed parameters, leaves the server-filled ones marked', () => {
    const c = 'Olá {{1}}, sua visita é {{2}} às {{3}}. Código {{4}}';
    expect(placeholderCount(c)).toBe(4);
    expect(renderTemplate(c, 'Ana', ['X1'], (n) => `[${n}]`)).toBe('Olá Ana, sua visita é [2] às [3]. Código X1');
    expect(renderTemplate(c, 'Ana', [], (n) => `[${n}]`)).toBe('Olá Ana, sua visita é [2] às [3]. Código [4]');
    expect(placeholderCount('no placeholders')).toBe(0);
  });
});
