// A real OpenID Provider (npm `oidc-provider` 8.x) for the test suite, listening on loopback only.
//
// Environment:
//   OIDC_PORT                  port to listen on (127.0.0.1)
//   OIDC_ISSUER                issuer URL (default http://127.0.0.1:$OIDC_PORT)
//   OIDC_CLIENTS               JSON list of client metadata (client_id, client_secret,
//                              redirect_uris, post_logout_redirect_uris)
//   OIDC_ACCOUNTS              JSON object: account id -> claims (email, name, groups, ...)
//
// Sign-in uses the package's development login form (any password); consent is granted
// up front for the static clients, as for a first-party application.
//
// Test control (loopback only, this file only): POST /__test__/fault with {"mode": "..."}
// makes the NEXT token response carry a tampered ID token, re-signed with the provider's
// own key unless the mode is about the signature. Modes are listed in FAULTS below.
'use strict';

const http = require('node:http');
const crypto = require('node:crypto');

function requiredJson(name) {
  const raw = process.env[name];
  if (!raw) {
    throw new Error(`${name} is required`);
  }
  return JSON.parse(raw);
}

function b64url(input) {
  return Buffer.from(input).toString('base64url');
}

function decodeSegment(segment) {
  return JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'));
}

async function main() {
  const { default: Provider } = await import('oidc-provider');
  const jose = await import('jose');

  const port = Number(process.env.OIDC_PORT);
  if (!port) {
    throw new Error('OIDC_PORT is required');
  }
  const issuer = process.env.OIDC_ISSUER || `http://127.0.0.1:${port}`;
  const clients = requiredJson('OIDC_CLIENTS');
  const accounts = requiredJson('OIDC_ACCOUNTS');

  const { privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
  const signingJwk = { ...(await jose.exportJWK(privateKey)), kid: 'test-rs256', alg: 'RS256', use: 'sig' };
  const signingKey = await jose.importJWK(signingJwk, 'RS256');

  let pendingFault = null;

  async function signClaims(header, claims, key = signingKey) {
    return new jose.SignJWT(claims).setProtectedHeader(header).sign(key);
  }

  // Each fault rewrites the decoded ID token {header, claims} and returns a compact JWT.
  const FAULTS = {
    iss: async (h, c) => signClaims(h, { ...c, iss: 'http://issuer.invalid' }),
    aud: async (h, c) => signClaims(h, { ...c, aud: 'another-client', azp: undefined }),
    'aud-multi-no-azp': async (h, c) => {
      const { azp, ...rest } = c;
      return signClaims(h, { ...rest, aud: [c.aud, 'another-client'] });
    },
    'azp-other': async (h, c) => signClaims(h, { ...c, aud: [c.aud, 'another-client'], azp: 'another-client' }),
    'aud-untrusted-extra': async (h, c) => signClaims(h, { ...c, aud: ['other-client', c.aud], azp: c.aud }),
    expired: async (h, c) => {
      const now = Math.floor(Date.now() / 1000);
      return signClaims(h, { ...c, iat: now - 7200, exp: now - 3600 });
    },
    'issued-in-future': async (h, c) => {
      const now = Math.floor(Date.now() / 1000);
      return signClaims(h, { ...c, iat: now + 3600, exp: now + 7200 });
    },
    nonce: async (h, c) => signClaims(h, { ...c, nonce: 'not-the-nonce-that-was-sent' }),
    'no-nonce': async (h, c) => {
      const { nonce, ...rest } = c;
      return signClaims(h, rest);
    },
    signature: async (h, c) => {
      const token = await signClaims(h, { ...c, name: 'Tampered' });
      const [head, body, sig] = token.split('.');
      const flipped = sig[0] === 'A' ? `B${sig.slice(1)}` : `A${sig.slice(1)}`;
      return `${head}.${body}.${flipped}`;
    },
    'alg-none': async (h, c) => `${b64url(JSON.stringify({ alg: 'none', typ: 'JWT' }))}.${b64url(JSON.stringify(c))}.`,
    hs256: async (h, c) => {
      const secret = new TextEncoder().encode(clients[0].client_secret);
      return signClaims({ alg: 'HS256', typ: 'JWT' }, c, secret);
    },
    'unknown-key': async (h, c) => {
      const { privateKey: otherKey } = await jose.generateKeyPair('RS256');
      return signClaims({ ...h, kid: 'key-nobody-published' }, c, otherKey);
    },
    'no-groups': async (h, c) => {
      const { groups, ...rest } = c;
      return signClaims(h, rest);
    },
    'no-id-token': null,
  };

  const accountClaims = (id) => ({ sub: id, ...accounts[id] });

  const provider = new Provider(issuer, {
    clients,
    jwks: { keys: [signingJwk] },
    cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name'],
      groups: ['groups'],
    },
    scopes: ['openid', 'email', 'profile', 'groups'],
    // Claims asked for through scopes go into the ID token, as most providers do.
    conformIdTokenClaims: false,
    pkce: { required: () => true, methods: ['S256'] },
    features: {
      devInteractions: { enabled: true },
      rpInitiatedLogout: {
        enabled: true,
        logoutSource: async (ctx, form) => {
          ctx.body = `<!DOCTYPE html><html><head><title>Sign out</title></head><body>
            <h1>Sign out of the test provider?</h1>${form}
            <button type="submit" form="op.logoutForm" value="yes" name="logout">Yes, sign me out</button>
            </body></html>`;
        },
        postLogoutSuccessSource: async (ctx) => {
          ctx.body = '<!DOCTYPE html><html><body><h1>Signed out at the provider</h1></body></html>';
        },
      },
    },
    async findAccount(ctx, id) {
      if (!Object.hasOwn(accounts, id)) {
        return undefined;
      }
      return { accountId: id, claims: async () => accountClaims(id) };
    },
    async loadExistingGrant(ctx) {
      const grantId = ctx.oidc.result?.consent?.grantId
        || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId) {
        return ctx.oidc.provider.Grant.find(grantId);
      }
      const grant = new ctx.oidc.provider.Grant({
        clientId: ctx.oidc.client.clientId,
        accountId: ctx.oidc.session.accountId,
      });
      grant.addOIDCScope('openid email profile groups');
      await grant.save();
      return grant;
    },
    renderError: async (ctx, out) => {
      ctx.type = 'html';
      ctx.body = `<!DOCTYPE html><html><body><h1>Provider error</h1><pre>${
        JSON.stringify(out).replace(/</g, '&lt;')}</pre></body></html>`;
    },
  });

  provider.use(async (ctx, next) => {
    if (ctx.path === '/__test__/fault' && ctx.method === 'POST') {
      const chunks = [];
      for await (const chunk of ctx.req) chunks.push(chunk);
      const { mode } = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
      if (mode !== null && !Object.hasOwn(FAULTS, mode)) {
        ctx.status = 400;
        ctx.body = { error: `unknown fault ${mode}`, known: Object.keys(FAULTS) };
        return;
      }
      pendingFault = mode;
      ctx.body = { fault: mode };
      return;
    }
    await next();
    if (ctx.path === '/token' && pendingFault && ctx.status === 200 && ctx.body?.id_token) {
      const mode = pendingFault;
      pendingFault = null;
      if (FAULTS[mode] === null) {
        delete ctx.body.id_token;
        return;
      }
      const [head, body] = ctx.body.id_token.split('.');
      ctx.body.id_token = await FAULTS[mode](decodeSegment(head), decodeSegment(body));
    }
  });

  const server = http.createServer(provider.callback());
  server.listen(port, '127.0.0.1', () => {
    process.stdout.write(`oidc-provider listening on ${issuer}\n`);
  });
  const stop = () => server.close(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((error) => {
  process.stderr.write(`${error.stack || error}\n`);
  process.exit(1);
});
