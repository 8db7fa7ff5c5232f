import { Store, useStore } from './store';

/** The current path + query; the app's only router state. */
export const location$ = new Store<string>(
  typeof window !== 'undefined' ? window.location.pathname + window.location.search : '/',
);

if (typeof window !== 'undefined') {
  window.addEventListener('popstate', () =>
    location$.set(window.location.pathname + window.location.search),
  );
}

export function navigate(to: string, replace = false): void {
  if (to === location$.get()) return;
  if (replace) history.replaceState(null, '', to);
  else history.pushState(null, '', to);
  location$.set(to);
  window.scrollTo?.(0, 0);
}

export function useLocation(): { path: string; query: URLSearchParams } {
  const full = useStore(location$);
  const [path, q] = full.split('?', 2) as [string, string | undefined];
  return { path, query: new URLSearchParams(q ?? '') };
}

/** `/inbox/:id` against `/inbox/abc` → `{id: 'abc'}`; no match → null. */
export function match(pattern: string, path: string): Record<string, string> | null {
  const want = pattern.split('/').filter(Boolean);
  const got = path.split('/').filter(Boolean);
  if (want.length !== got.length) return null;
  const params: Record<string, string> = {};
  for (let i = 0; i < want.length; i++) {
    const w = want[i]!;
    const g = got[i]!;
    if (w.startsWith(':')) params[w.slice(1)] = decodeURIComponent(g);
    else if (w !== g) return null;
  }
  return params;
}

/** A link that navigates without a reload. */
export function onLink(e: MouseEvent, to: string): void {
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  e.preventDefault();
  navigate(to);
}
