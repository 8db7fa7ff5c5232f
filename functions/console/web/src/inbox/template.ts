/** Filling a WhatsApp template the way POST /api/messages/template does:
 * {{1}} the contact's name, {{2}}/{{3}} the open deal's meeting date and
 * time (filled by the server), {{4}}… the parameters the user types. */

export const SERVER_FILLED = new Set([2, 3]);

/** The highest {{n}} in the content (0 when none). */
export function placeholderCount(content: string): number {
  let max = 0;
  for (const m of content.matchAll(/\{\{\s*(\d+)\s*\}\}/g)) max = Math.max(max, Number(m[1]));
  return max;
}

/** The text with what is known filled in; unknown ones stay as given by `fallback`. */
export function renderTemplate(content: string, name: string, params: string[], fallback: (n: number) => string): string {
  return content.replace(/\{\{\s*(\d+)\s*\}\}/g, (_, raw: string) => {
    const n = Number(raw);
    if (n === 1) return name || fallback(1);
    if (n >= 4) return params[n - 4]?.trim() || fallback(n);
    return fallback(n);
  });
}
