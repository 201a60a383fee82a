// op.mjs: the test OpenID Provider (oidc-provider 9.13.3) that package
// oidcop starts for Go tests. It is not a server to run for anything else.
//
// Usage: OIDCOP_CONFIG=JSON OIDCOP_CONTROL_TOKEN=T node --input-type=module
// -e "$(cat op.mjs)", run in the folder whose node_modules holds
// oidc-provider (so nothing is written anywhere). It listens
// on 127.0.0.1 on a free port, then prints one JSON line {"port":N} on
// stdout. It exits when its standard input closes (the Go test process
// ended, even abruptly) or on SIGTERM.
//
// Besides the provider's own routes it serves:
//   GET  /interaction/:uid        the login page (prompt "login"); a
//                                 "consent" prompt is granted at once
//   POST /interaction/:uid/login  form field "login": the account id
//   GET  /.well-known/oauth-authorization-server  same as openid-configuration
//   POST /control/rotate          new signing key (control token needed)
//   POST /control/groups          {"login":..,"groups":[..]} (control token)
import { randomBytes, generateKeyPairSync } from 'node:crypto';
import http from 'node:http';
import Provider, { errors } from 'oidc-provider';

const cfg = JSON.parse(process.env.OIDCOP_CONFIG);
const controlToken = process.env.OIDCOP_CONTROL_TOKEN;
if (!controlToken) {
  throw new Error('OIDCOP_CONTROL_TOKEN is not set');
}

// login -> groups; changed by /control/groups, read for every claim set.
const groups = new Map(Object.entries(cfg.groups || {}));
const resources = new Set(cfg.resources);
const resourceScope = (cfg.scopes || []).join(' ');
const ttl = cfg.accessTokenTTL;
const cookieKeys = [randomBytes(32).toString('base64url')];

function newKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    ...privateKey.export({ format: 'jwk' }),
    kid: randomBytes(12).toString('base64url'),
    use: 'sig',
    alg: 'RS256',
  };
}

function groupsOf(login) {
  return groups.get(login) || [];
}

function accountClaims(id) {
  return {
    sub: id,
    preferred_username: id,
    name: id,
    groups: groupsOf(id),
  };
}

function build(issuer) {
  const configuration = {
    clients: cfg.clients,
    // OAuth 2.1: the code flow only (no implicit, no hybrid).
    responseTypes: ['code'],
    jwks: { keys: [newKey()] },
    cookies: { keys: cookieKeys },
    scopes: ['openid', 'offline_access', ...(cfg.scopes || [])],
    claims: {
      openid: ['sub', 'preferred_username', 'groups'],
      profile: ['preferred_username', 'name'],
      groups: ['groups'],
    },
    // Scope-requested claims go into the ID token too, not only userinfo.
    conformIdTokenClaims: false,
    findAccount(ctx, id) {
      return { accountId: id, claims: async () => accountClaims(id) };
    },
    async extraTokenClaims(ctx, token) {
      if (token.accountId) {
        return { preferred_username: token.accountId, groups: groupsOf(token.accountId) };
      }
      if (token.clientId && groups.has(token.clientId)) {
        return { groups: groupsOf(token.clientId) };
      }
      return undefined;
    },
    // A refresh token for every client allowed the grant (the MCP SDK
    // asks for no offline_access), not only with offline_access.
    issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
    // Every requested OIDC and resource scope is granted: the consent
    // prompt does not come up (a first-party login in a test).
    async loadExistingGrant(ctx) {
      const { oidc } = ctx;
      const grantId = oidc.result?.consent?.grantId
        || oidc.session.grantIdFor(oidc.client.clientId);
      let grant = grantId ? await oidc.provider.Grant.find(grantId) : undefined;
      if (!grant) {
        grant = new oidc.provider.Grant({
          accountId: oidc.session.accountId,
          clientId: oidc.client.clientId,
        });
      }
      grantAll(oidc, grant);
      await grant.save();
      return grant;
    },
    interactions: {
      url(ctx, interaction) {
        return `/interaction/${interaction.uid}`;
      },
    },
    pkce: {
      required: (ctx, client) => cfg.requirePKCE || client.clientAuthMethod === 'none',
    },
    ttl: {
      AccessToken: (ctx, token) => token.resourceServer?.accessTokenTTL || ttl,
      ClientCredentials: (ctx, token) => token.resourceServer?.accessTokenTTL || ttl,
    },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      registration: { enabled: !!cfg.registration, initialAccessToken: false },
      resourceIndicators: {
        enabled: true,
        defaultResource: async (ctx, client, oneOf) => oneOf || cfg.resources[0],
        useGrantedResource: async () => true,
        getResourceServerInfo: async (ctx, resourceIndicator) => {
          if (!resources.has(resourceIndicator)) {
            throw new errors.InvalidTarget(`unknown resource ${resourceIndicator}`);
          }
          return {
            scope: resourceScope,
            audience: resourceIndicator,
            accessTokenTTL: ttl,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
  };
  const provider = new Provider(issuer, configuration);
  provider.on('server_error', (ctx, err) => console.error('oidcop: server_error', err));
  return provider;
}

// grantAll adds what the request asks for to grant: its OIDC scopes and
// claims, and its scopes of each requested resource.
function grantAll(oidc, grant) {
  const oidcScopes = [...oidc.requestParamOIDCScopes];
  if (oidcScopes.length) {
    grant.addOIDCScope(oidcScopes.join(' '));
  }
  const claims = [...(oidc.requestParamClaims || [])];
  if (claims.length) {
    grant.addOIDCClaims(claims);
  }
  for (const [indicator, rs] of Object.entries(oidc.resourceServers || {})) {
    const scopes = [...oidc.requestParamScopes].filter((s) => rs.scopes.has(s));
    if (scopes.length) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
  }
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size > 1 << 20) {
        reject(new Error('body too large'));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function send(res, status, type, body) {
  res.statusCode = status;
  res.setHeader('Content-Type', type);
  res.setHeader('Cache-Control', 'no-store');
  res.end(body);
}

function html(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

let provider;
let handler;

// interaction serves the login page and the auto-consent.
async function interaction(req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) {
    send(res, 400, 'text/plain', 'interaction uid does not match its cookie\n');
    return;
  }
  const prompt = details.prompt.name;
  if (action === '' && req.method === 'GET' && prompt === 'login') {
    send(res, 200, 'text/html; charset=utf-8', `<!doctype html>
<title>Test OP sign-in</title>
<form method="post" action="/interaction/${html(uid)}/login">
<label>Login <input name="login" autofocus></label>
<button type="submit">Sign in</button>
</form>
<p>client ${html(details.params.client_id)}, scope ${html(details.params.scope || '')}</p>
`);
    return;
  }
  if (action === '' && req.method === 'GET' && prompt === 'consent') {
    const { Grant } = provider;
    let grant = details.grantId ? await Grant.find(details.grantId) : undefined;
    if (!grant) {
      grant = new Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
    }
    const d = details.prompt.details;
    if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
    if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(d.missingResourceScopes || {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    const grantId = await grant.save();
    await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
    return;
  }
  if (action === 'login' && req.method === 'POST' && prompt === 'login') {
    const form = new URLSearchParams(await readBody(req));
    const login = (form.get('login') || '').trim();
    if (!login) {
      send(res, 400, 'text/plain', 'the form field "login" is empty\n');
      return;
    }
    await provider.interactionFinished(req, res, { login: { accountId: login } }, { mergeWithLastSubmission: false });
    return;
  }
  send(res, 400, 'text/plain', `no ${req.method} ${action || 'page'} for prompt ${prompt}\n`);
}

async function control(req, res, action) {
  if (req.method !== 'POST' || req.headers['x-oidcop-control'] !== controlToken) {
    send(res, 403, 'text/plain', 'forbidden\n');
    return;
  }
  if (action === 'rotate') {
    provider = build(provider.issuer);
    handler = provider.callback();
    send(res, 200, 'application/json', '{}\n');
    return;
  }
  if (action === 'groups') {
    const { login, groups: g } = JSON.parse(await readBody(req));
    if (typeof login !== 'string' || !login || !Array.isArray(g)) {
      send(res, 400, 'text/plain', 'want {"login":"…","groups":[…]}\n');
      return;
    }
    groups.set(login, g.map(String));
    send(res, 200, 'application/json', '{}\n');
    return;
  }
  send(res, 404, 'text/plain', 'no such control\n');
}

const server = http.createServer(async (req, res) => {
  try {
    const { pathname } = new URL(req.url, 'http://op');
    let m = /^\/interaction\/([^/]+)(?:\/(login))?$/.exec(pathname);
    if (m) {
      await interaction(req, res, m[1], m[2] || '');
      return;
    }
    m = /^\/control\/([a-z]+)$/.exec(pathname);
    if (m) {
      await control(req, res, m[1]);
      return;
    }
    if (pathname === '/.well-known/oauth-authorization-server') {
      req.url = '/.well-known/openid-configuration';
    }
    handler(req, res);
  } catch (err) {
    console.error('oidcop:', req.method, req.url, err);
    if (!res.headersSent) {
      send(res, err.statusCode || 500, 'text/plain', `${err.name}: ${err.message}\n`);
    } else {
      res.destroy();
    }
  }
});

server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  provider = build(`http://127.0.0.1:${port}`);
  handler = provider.callback();
  process.stdout.write(`${JSON.stringify({ port })}\n`);
});

function stop() {
  server.close();
  server.closeAllConnections();
  process.exit(0);
}
process.stdin.on('end', stop);
process.stdin.on('error', stop);
process.stdin.resume();
process.on('SIGTERM', stop);
