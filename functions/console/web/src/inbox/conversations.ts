/** The caller's conversation list: shared by the inbox and the unread badge
 * in the navigation (the one state two screens share), refreshed on feed
 * events so counts move without a reload. */
import { rawJson } from '../api/client';
import type { Conversation, ConversationPage } from '../api/pending';
import { Store } from '../store';

export type { Conversation };

export const conversations$ = new Store<Conversation[] | null>(null);

export function totalUnread(list: Conversation[] | null): number {
  return (list ?? []).reduce((n, c) => n + c.unread_count, 0);
}

let loading: Promise<void> | null = null;

export function refreshConversations(): Promise<void> {
  if (loading) return loading;
  loading = (async () => {
    try {
      const page = await rawJson<ConversationPage>('GET', '/api/conversations?limit=100');
      conversations$.set(page.conversations);
    } finally {
      loading = null;
    }
  })();
  return loading;
}

export function markedRead(contactId: string): void {
  const list = conversations$.get();
  if (list) conversations$.set(list.map((c) => (c.contact_id === contactId ? { ...c, unread_count: 0 } : c)));
}
