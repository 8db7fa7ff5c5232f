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
