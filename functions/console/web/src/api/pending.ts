/** Shapes of routes being added to openapi.json in parallel (accounts).
 * Everything else comes from the generated `schema.d.ts`; once these land
 * there, swap each alias for `components['schemas'][…]`. */
export type Role = 'admin' | 'member';

export interface User {
  id: string;
  email: string;
  name: string | null;
  role: Role;
  caps: string[];
}

/** POST /api/v1/auth/login and /refresh. */
export interface TokenAnswer {
  access_token: string;
  token_type: string;
  expires_in: number;
  user: User;
}

/* The console API (conversations, mark read, media links) as documented on
 * its branch; until its routes are in openapi.json these calls go through
 * `rawJson`. Then: `components['schemas']['Conversation']` etc. and `api.GET`. */

export interface ConversationMessage {
  id: string;
  direction: 'in' | 'out';
  channel: 'sms' | 'whatsapp';
  status: string;
  /** The body cut to 120 characters; null for media only. */
  preview?: string | null;
  num_media: number;
  created_at: string;
}

/** GET /api/conversations → { conversations, next_cursor, limit }. */
export interface Conversation {
  contact_id: string;
  full_name?: string | null;
  phone?: string | null;
  owner_id?: string | null;
  unread_count: number;
  last_message: ConversationMessage;
  /** Last inbound WhatsApp message + 24 h; null when the contact never wrote on WhatsApp. */
  window_open_until: string | null;
  window_open: boolean;
}

export interface ConversationPage {
  conversations: Conversation[];
  next_cursor: string | null;
  limit: number;
}

/** GET /api/messages/{id}/media/{index} with Accept: application/json. */
export interface MediaLink {
  url: string;
  content_type: string;
  bytes?: number | null;
  expires_in: number;
}
