import { Store, useStore } from '../store';
import { useI18n } from '../i18n';
import { navigate } from '../router';

export interface Toast {
  id: number;
  text: string;
  kind: 'info' | 'error';
  /** A link the toast offers ("View"). */
  to?: string;
}

export const toasts$ = new Store<Toast[]>([]);
let seq = 0;

export function toast(text: string, kind: Toast['kind'] = 'info', to?: string, ms = 8000): void {
  const t: Toast = { id: ++seq, text, kind, ...(to ? { to } : {}) };
  toasts$.set([...toasts$.get(), t].slice(-5));
  setTimeout(() => dismiss(t.id), ms);
}

export function dismiss(id: number): void {
  toasts$.set(toasts$.get().filter((t) => t.id !== id));
}

export function Toaster() {
  const list = useStore(toasts$);
  const { t } = useI18n();
  return (
    <div class="toasts" role="region" aria-label={t('notify.region')}>
      {list.map((x) => (
        <div key={x.id} class={`toast toast-${x.kind}`} role={x.kind === 'error' ? 'alert' : 'status'}>
          <span>{x.text}</span>
          {x.to && (
            <button type="button" class="link" onClick={() => { dismiss(x.id); navigate(x.to!); }}>
              {t('notify.view')}
            </button>
          )}
          <button type="button" class="icon" aria-label={t('common.close')} onClick={() => dismiss(x.id)}>
            ×
          </button>
        </div>
      ))}
    </div>
  );
}
