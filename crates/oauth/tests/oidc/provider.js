// A real OpenID Provider (panva's oidc-provider) for the OAuth tests of
// Convosphere Auth. The tests drive it over HTTP like a browser would.
//
//   node provider.js
//
// listens on 127.0.0.1 on a free port and prints one JSON line,
// {"issuer": "http://127.0.0.1:PORT"}, once it is ready. It exits when its
// standard input closes, so a test process that dies takes it along.
//
// One confidential client is registered (client_secret_basic, code flow,
// PKCE required):
//   OIDC_CLIENT_ID       default "convosphere-test"
//   OIDC_CLIENT_SECRET   default "convosphere-test-secret"
//   OIDC_REDIRECT_URIS   comma-separated, required
//
// Test accounts need no registration: the authorization request's
// `login_hint` names the account, and the interaction logs it in at once
// (no form) and grants the requested scopes (no consent screen). The hint is
// `;`-separated `key=value` pairs, and the whole hint is the account's `sub`:
//   sub=ada;email=ada@example.com                 e-mail verified, in the ID token
//   sub=bob;email=bob@example.com;verified=0      e-mail not verified
//   sub=eve;email=eve@example.com;at=userinfo     e-mail only at the userinfo endpoint
//   sub=nil                                       no e-mail at all
// `name=…` sets the name claim.

import { createServer } from 'node:http';
import Provider from 'oidc-provider';

const clientId = process.env.OIDC_CLIENT_ID || 'convosphere-test';
const clientSecret = process.env.OIDC_CLIENT_SECRET || 'convosphere-test-secret';
const redirectUris = (process.env.OIDC_REDIRECT_URIS || '')
  .split(',')
  .map((uri) => uri.trim())
  .filter(Boolean);
if (redirectUris.length === 0) {
  console.error('OIDC_REDIRECT_URIS must name at least one redirect URI');
  process.exit(2);
}

/** The account a login hint describes. */
function account(hint) {
  const fields = Object.fromEntries(
    hint.split(';').map((pair) => {
      const at = pair.indexOf('=');
      return at < 0 ? [pair, ''] : [pair.slice(0, at), pair.slice(at + 1)];
    }),
  );
  return {
    email: fields.email,
    emailVerified: fields.verified !== '0',
    emailAt: fields.at || 'id_token',
    name: fields.name || 'Test User',
  };
}

const server = createServer();
// Longer than any test: a client's pooled connection must not be closed
// under it (Node's default is 5 s, and a POST is not retried on a reset).
server.keepAliveTimeout = 120_000;

server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: clientId,
        client_secret: clientSecret,
        redirect_uris: redirectUris,
        grant_types: ['authorization_code'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    cookies: { keys: ['convosphere-test-cookie-key'] },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name'],
    },
    // Claims of the granted scopes go into the ID token too, as Google does;
    // an account can still keep its e-mail to the userinfo endpoint (`at=userinfo`).
    conformIdTokenClaims: false,
    features: { devInteractions: { enabled: false } },
    pkce: { required: () => true },
    async findAccount(_ctx, id) {
      const acct = account(id);
      return {
        accountId: id,
        async claims(use) {
          const claims = { sub: id, name: acct.name };
          if (acct.email && (acct.emailAt !== 'userinfo' || use === 'userinfo')) {
            claims.email = acct.email;
            claims.email_verified = acct.emailVerified;
          }
          return claims;
        },
      };
    },
    // First-party client: whatever it asks for is granted, no consent screen.
    async loadExistingGrant(ctx) {
      const grant = new ctx.oidc.provider.Grant({
        clientId: ctx.oidc.client.clientId,
        accountId: ctx.oidc.session.accountId,
      });
      grant.addOIDCScope(ctx.oidc.params.scope || 'openid');
      grant.addOIDCClaims(['email', 'email_verified', 'name']);
      await grant.save();
      return grant;
    },
    renderError(ctx, out) {
      ctx.type = 'application/json';
      ctx.body = out;
    },
  });

  // The login "page": logs in the account named by login_hint at once.
  provider.use(async (ctx, next) => {
    if (ctx.method !== 'GET' || !ctx.path.startsWith('/interaction/')) {
      await next();
      return;
    }
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    const hint = details.params.login_hint;
    if (details.prompt.name !== 'login' || !hint) {
      ctx.status = 400;
      ctx.type = 'text/plain';
      ctx.body = `cannot complete the ${details.prompt.name} prompt: send login_hint naming the test account`;
      return;
    }
    const to = await provider.interactionResult(
      ctx.req,
      ctx.res,
      { login: { accountId: hint } },
      { mergeWithLastSubmission: false },
    );
    ctx.status = 303;
    ctx.redirect(to);
  });

  server.on('request', provider.callback());
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
});

// The test process holds our stdin: when it goes away, so do we.
process.stdin.on('end', () => process.exit(0));
process.stdin.on('close', () => process.exit(0));
process.stdin.resume();
