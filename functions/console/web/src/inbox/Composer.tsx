import { useEffect, useRef, useState } from 'preact/hooks';
import { api, rawJson, reason, unwrap, type Schemas } from '../api/client';
import { useI18n, type Key } from '../i18n';
import { refreshConversations } from './conversations';
import { placeholderCount, renderTemplate, SERVER_FILLED } from './template';
import { ClipIcon } from '../shell/icons';
import { canSendFreeText, msUntilChange, type WindowState } from './window';

type Template = Schemas['CampaignTemplate'];
type Channel = 'whatsapp' | 'sms';

interface UploadAnswer {
  upload_url: string;
  method: string;
  headers: Record<string, string>;
  media_key: string;
}

export function Composer(props: { contactId: string; contactName: string; defaultChannel: Channel; window: WindowState; onSent: () => void }) {
  const { t, f } = useI18n();
  const [channel, setChannel] = useState<Channel>(props.defaultChannel);
  const [text, setText] = useState('');
  const [file, setFile] = useState<File | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [, setTick] = useState(0);
  const fileInput = useRef<HTMLInputElement>(null);

  // Re-render when the window closes by itself.
  useEffect(() => {
    const ms = msUntilChange(props.window, new Date());
    if (ms === null || ms > 2 ** 31 - 1) return;
    const id = setTimeout(() => setTick((n) => n + 1), ms + 50);
    return () => clearTimeout(id);
  }, [props.window]);
  useEffect(() => setChannel(props.defaultChannel), [props.defaultChannel]);

  const free = canSendFreeText(channel, props.window);
  const reasonText = !free
    ? props.window.kind === 'closed'
      ? t('inbox.windowClosed', { when: f.dateTime(new Date(props.window.until.getTime() - 86_400_000)) })
      : t('inbox.windowNever')
    : null;

  const upload = async (file: File): Promise<string> => {
    const a = await rawJson<UploadAnswer>('POST', '/api/media/upload-url', { content_type: file.type, bytes: file.size });
    const headers = { ...a.headers };
    delete headers['content-length'];
    const r = await fetch(a.upload_url, { method: a.method || 'PUT', headers, body: file, credentials: 'omit' });
    if (!r.ok) throw new Error(`upload: ${r.status}`);
    return a.media_key;
  };

  const send = async () => {
    if (busy || !free || (!text.trim() && !file)) return;
    setBusy(true);
    setError(null);
    try {
      const media_key = file ? await upload(file) : undefined;
      unwrap(
        await api.POST('/api/messages', {
          params: { header: { 'Idempotency-Key': crypto.randomUUID() } },
          body: { contact_id: props.contactId, channel, ...(text.trim() ? { body: text } : {}), ...(media_key ? { media_key } : {}) },
        }),
      );
      setText('');
      setFile(null);
      if (fileInput.current) fileInput.current.value = '';
      props.onSent();
      void refreshConversations().catch(() => undefined);
    } catch (e) {
      setError(t('inbox.sendFailed', { reason: reason(e) }));
    } finally {
      setBusy(false);
    }
  };

  return (
    <div class="composer">
      {reasonText && <p id="composer-reason" class="composer-reason" role="note">{reasonText}</p>}
      <div class="composer-row">
        <label class="channel">
          <span class="sr-only">{t('inbox.channel')}</span>
          <select aria-label={t('inbox.channel')} value={channel} onChange={(e) => setChannel(e.currentTarget.value as Channel)}>
            <option value="whatsapp">{t('channel.whatsapp')}</option>
            <option value="sms">{t('channel.sms')}</option>
          </select>
        </label>
        <textarea
          aria-label={t('inbox.composer')}
          aria-describedby={reasonText ? 'composer-reason' : 'composer-hint'}
          disabled={!free || busy}
          rows={2}
          value={text}
          onInput={(e) => setText(e.currentTarget.value)}
          onKeyDown={(e) => {
            if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
              e.preventDefault();
              void send();
            }
          }}
        />
        <label class={`button attach${!free ? ' disabled' : ''}`}>
          <ClipIcon /><span class="sr-only">{t('inbox.attach')}</span>
          <input ref={fileInput} type="file" class="sr-only" aria-label={t('inbox.attach')} disabled={!free}
            accept="image/jpeg,image/png,image/webp,image/gif,application/pdf,audio/*,video/mp4"
            onChange={(e) => setFile(e.currentTarget.files?.[0] ?? null)} />
        </label>
        <button type="button" class="primary" disabled={!free || busy || (!text.trim() && !file)} onClick={() => void send()}>
          {t('inbox.send')}
        </button>
      </div>
      <p id="composer-hint" class="hint">{t('inbox.composerHint')}</p>
      {file && (
        <p class="attached">
          {t('inbox.attached', { name: file.name })}{' '}
          <button type="button" class="link" onClick={() => { setFile(null); if (fileInput.current) fileInput.current.value = ''; }}>
            {t('inbox.removeAttachment')}
          </button>
        </p>
      )}
      {busy && file && <p role="status">{t('inbox.uploading')}</p>}
      {error && <p class="error" role="alert">{error}</p>}
      {channel === 'whatsapp' && <TemplatePicker contactId={props.contactId} contactName={props.contactName} onSent={props.onSent} />}
    </div>
  );
}

function TemplatePicker(props: { contactId: string; contactName: string; onSent: () => void }) {
  const { t } = useI18n();
  const [open, setOpen] = useState(false);
  const [list, setList] = useState<Template[] | null>(null);
  const [id, setId] = useState('');
  const [params, setParams] = useState<string[]>([]);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    if (!open || list) return;
    api.GET('/api/v1/crm/templates', { params: { query: { channel: 'whatsapp' } } }).then((r) => {
      try {
        const items = (unwrap(r).items ?? []).filter((x) => x.status === 'approved');
        setList(items);
        if (items[0]?.id) setId(items[0].id);
      } catch (e) {
        setError(reason(e));
        setList([]);
      }
    });
  }, [open]);

  const tpl = list?.find((x) => x.id === id) ?? null;
  const count = tpl?.content ? placeholderCount(tpl.content) : 0;
  const extra = Math.max(0, count - 3);
  const preview = tpl?.content
    ? renderTemplate(tpl.content, props.contactName, params, (n) => (SERVER_FILLED.has(n) ? `[${n === 2 ? '📅' : '🕑'}]` : `{{${n}}}`))
    : '';

  const send = async (e: Event) => {
    e.preventDefault();
    if (!tpl?.id) return;
    setBusy(true);
    setError(null);
    try {
      unwrap(await api.POST('/api/messages/template', {
        body: { contact_id: props.contactId, template_id: tpl.id, parameters: params.slice(0, extra).map((p) => p.trim()) },
      }));
      setParams([]);
      setOpen(false);
      props.onSent();
    } catch (err) {
      setError(t('inbox.sendFailed', { reason: reason(err) }));
    } finally {
      setBusy(false);
    }
  };

  return (
    <div class="templates">
      <button type="button" aria-expanded={open} onClick={() => setOpen(!open)}>{t('inbox.template')}</button>
      {open && (
        <form class="template-form" onSubmit={send} aria-label={t('inbox.template')}>
          {list === null ? (
            <p role="status">{t('common.loading')}</p>
          ) : list.length === 0 ? (
            <p>{t('inbox.noTemplates')}</p>
          ) : (
            <>
              <label>
                {t('inbox.templatePick')}
                <select value={id} onChange={(e) => { setId(e.currentTarget.value); setParams([]); }}>
                  {list.map((x) => <option key={x.id} value={x.id}>{x.name}</option>)}
                </select>
              </label>
              {Array.from({ length: extra }, (_, i) => (
                <label key={i}>
                  {t('inbox.templateParam', { placeholder: `{{${i + 4}}}` })}
                  <input required value={params[i] ?? ''} onInput={(e) => {
                    const next = [...params];
                    next[i] = e.currentTarget.value;
                    setParams(next);
                  }} />
                </label>
              ))}
              <figure class="preview">
                <figcaption>{t('inbox.templatePreview')}</figcaption>
                <p aria-label={t('inbox.templatePreview')}>{preview}</p>
              </figure>
              <button type="submit" class="primary" disabled={busy}>{t('inbox.templateSend')}</button>
            </>
          )}
          {error && <p class="error" role="alert">{error}</p>}
        </form>
      )}
    </div>
  );
}

export type { Key };
