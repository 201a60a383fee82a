// The TypeScript SDK (1.32) as an OAuth client of nmap-mcp serve --http,
// whose identity provider is the test OpenID Provider (internal/testkit/
// oidcop): the SDK's own flow (discovery from the 401, the protected
// resource metadata, the authorization server metadata, dynamic client
// registration, authorization code with PKCE and the resource indicator,
// the token) for alice, who scans a loopback port; bob, who must not see
// her scan; and carol, who grants her client only nmap:read and so gets
// 403 insufficient_scope for a scan. Sign-in at the provider is
// login.mjs (the provider's login steps over fetch). Run by
// TestTypeScriptSDKOAuth (oauth_tssdk_e2e_test.go); prints one JSON
// object: every HTTP request made (to the MCP server and the provider), the
// tool results, and timings.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport, StreamableHTTPError } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { login } from './login.mjs';

const [MCP_URL, ISSUER, PORT] = process.argv.slice(2);
const REDIRECT = 'http://127.0.0.1:1/callback'; // never reached: login.mjs stops at it
const mcpOrigin = new URL(MCP_URL).origin;

// Every request anyone in this process makes (the SDK and login.mjs use
// the global fetch), with what matters of it: the OAuth parameters sent,
// and the challenge of a 401 or 403.
const requests = [];
let who = '';
const realFetch = globalThis.fetch;
globalThis.fetch = async (input, init = {}) => {
  const url = new URL(input instanceof Request ? input.url : String(input));
  const method = init.method || (input instanceof Request ? input.method : 'GET');
  const entry = { who, method, to: url.origin === mcpOrigin ? 'mcp' : url.origin === ISSUER ? 'op' : url.origin, path: url.pathname };
  if (url.pathname === '/auth') {
    const q = url.searchParams;
    entry.params = Object.fromEntries(['response_type', 'scope', 'resource', 'code_challenge_method', 'redirect_uri'].map((k) => [k, q.get(k)]));
    entry.params.code_challenge = !!q.get('code_challenge');
    entry.params.state = !!q.get('state');
  }
  if (url.pathname === '/token' && typeof init.body !== 'undefined') {
    const f = new URLSearchParams(String(init.body));
    entry.params = { grant_type: f.get('grant_type'), resource: f.get('resource'), redirect_uri: f.get('redirect_uri'), code_verifier: !!f.get('code_verifier'), code: !!f.get('code') };
  }
  if (url.pathname === '/reg' && typeof init.body === 'string') {
    const b = JSON.parse(init.body);
    entry.params = { scope: b.scope, token_endpoint_auth_method: b.token_endpoint_auth_method, grant_types: b.grant_types };
  }
  if (entry.to === 'mcp' && method === 'POST' && typeof init.body === 'string') {
    try {
      const m = JSON.parse(init.body);
      entry.rpc = m.method === 'tools/call' ? `tools/call ${m.params.name}` : m.method;
    } catch { /* not JSON */ }
  }
  if (entry.to === 'mcp') {
    const h = new Headers(init.headers);
    entry.bearer = (h.get('authorization') || '').startsWith('Bearer ');
  }
  const res = await realFetch(input, init);
  entry.status = res.status;
  if (res.status === 401 || res.status === 403) {
    entry.challenge = res.headers.get('www-authenticate');
  }
  requests.push(entry);
  return res;
};

// claims decodes a JWT's payload; only to report what was granted (the
// server checks the signature; this script does not need to).
function claims(jwt) {
  return JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString('utf8'));
}

// Person is an OAuthClientProvider held in memory: one person's client.
// Its sign-in is login.mjs as that person. grantOnly, when set, is the
// scope the person lets the client have whatever it asks for (the
// provider's consent, narrowed), as a read-only person would.
class Person {
  constructor(name, grantOnly) {
    this.name = name;
    this.grantOnly = grantOnly;
    this.signIns = 0;
    this.asked = [];
  }

  get redirectUrl() { return REDIRECT; }

  get clientMetadata() {
    return {
      client_name: `nmap-mcp oauth e2e (${this.name})`,
      redirect_uris: [REDIRECT],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
      scope: 'nmap:scan nmap:read',
    };
  }

  state() {
    this._state = crypto.randomUUID();
    return this._state;
  }

  clientInformation() { return this._client; }

  saveClientInformation(info) { this._client = info; }

  tokens() { return this._tokens; }

  saveTokens(tokens) { this._tokens = tokens; }

  saveCodeVerifier(v) { this._verifier = v; }

  codeVerifier() {
    if (!this._verifier) throw new Error('no code verifier saved');
    return this._verifier;
  }

  // redirectToAuthorization signs the person in at the provider and keeps
  // the code of the redirect back to the client.
  async redirectToAuthorization(url) {
    this.signIns += 1;
    this.asked.push(url.searchParams.get('scope'));
    const u = new URL(url);
    if (this.grantOnly) {
      u.searchParams.set('scope', this.grantOnly);
    }
    const back = await login(u.href, this.name);
    if (`${back.origin}${back.pathname}` !== REDIRECT) throw new Error(`sign-in came back to ${back}`);
    if (back.searchParams.get('error')) throw new Error(`sign-in: ${back.searchParams.get('error')}: ${back.searchParams.get('error_description')}`);
    if (back.searchParams.get('state') !== this._state) throw new Error(`sign-in: state ${back.searchParams.get('state')}, want ${this._state}`);
    if (back.searchParams.get('iss') !== ISSUER) throw new Error(`sign-in: iss ${back.searchParams.get('iss')}, want ${ISSUER}`);
    this._code = back.searchParams.get('code');
  }

  takeCode() {
    const c = this._code;
    this._code = undefined;
    if (!c) throw new Error(`${this.name}: no authorization code`);
    return c;
  }

  granted() {
    const c = claims(this._tokens.access_token);
    return { sub: c.sub, aud: c.aud, scope: c.scope, client_id: c.client_id, registered: this._client?.client_id };
  }
}

// connect runs the SDK's flow as person: the first connection gets 401,
// the SDK discovers and signs in (redirectToAuthorization), the code is
// handed to finishAuth, and a second connection gets in.
async function connect(person) {
  who = person.name;
  const t0 = Date.now();
  const first = new StreamableHTTPClientTransport(new URL(MCP_URL), { authProvider: person });
  const c1 = new Client({ name: `oauth-e2e-${person.name}`, version: '1' });
  let unauthorized = false;
  try {
    await c1.connect(first);
  } catch (e) {
    if (!(e instanceof UnauthorizedError)) throw e;
    unauthorized = true;
  }
  if (!unauthorized) throw new Error(`${person.name}: connected without signing in`);
  await first.finishAuth(person.takeCode());
  await first.close();
  const transport = new StreamableHTTPClientTransport(new URL(MCP_URL), { authProvider: person });
  const client = new Client({ name: `oauth-e2e-${person.name}`, version: '1' });
  await client.connect(transport);
  return { client, transport, seconds: (Date.now() - t0) / 1000 };
}

const text = (r) => (r.content || []).map((x) => x.text || '').join('');
const out = { timings: {} };
const tStart = Date.now();

// Alice: the whole flow, then a scan of a loopback port.
const alice = new Person('alice');
const a = await connect(alice);
out.timings.aliceConnect = a.seconds;
out.alice = { granted: alice.granted(), signIns: alice.signIns, asked: alice.asked };
let t0 = Date.now();
const scan = await a.client.callTool({ name: 'nmap_scan', arguments: { targets: '127.0.0.1', ports: PORT } }, undefined, { timeout: 120000 });
out.timings.scan = (Date.now() - t0) / 1000;
out.scan = { isError: !!scan.isError, structured: scan.structuredContent, text: text(scan).slice(0, 300) };
const scanID = scan.structuredContent?.scan_id;
const aliceList = await a.client.callTool({ name: 'list_scans', arguments: {} });
out.alice.listed = JSON.stringify(aliceList.structuredContent ?? text(aliceList)).includes(scanID);
const aliceGet = await a.client.callTool({ name: 'get_scan', arguments: { id: scanID } });
out.alice.get = { isError: !!aliceGet.isError, status: aliceGet.structuredContent?.status, id: aliceGet.structuredContent?.scan_id };
await a.client.close();

// Bob: his own sign-in (his own registration too); alice's scan is not his.
const bob = new Person('bob');
const b = await connect(bob);
out.timings.bobConnect = b.seconds;
out.bob = { granted: bob.granted(), signIns: bob.signIns };
const bobList = await b.client.callTool({ name: 'list_scans', arguments: {} });
out.bob.listedAlices = JSON.stringify(bobList).includes(scanID);
const bobGet = await b.client.callTool({ name: 'get_scan', arguments: { id: scanID } });
out.bob.get = { isError: !!bobGet.isError, text: text(bobGet).slice(0, 200) };
await b.client.close();

// Carol lets her client have nmap:read only: she reads, but a scan is
// 403 insufficient_scope naming nmap:scan. The SDK steps up (signs in
// again asking for the scope the 403 names); she still grants read only,
// and the SDK gives up on the second 403.
const carol = new Person('carol', 'nmap:read');
const c = await connect(carol);
out.timings.carolConnect = c.seconds;
out.carol = { granted: carol.granted() };
const carolList = await c.client.callTool({ name: 'list_scans', arguments: {} });
out.carol.listIsError = !!carolList.isError;
const carolScan = { name: 'nmap_scan', arguments: { targets: '127.0.0.1', ports: PORT } };
out.carol.attempts = [];
for (let i = 0; i < 3; i += 1) {
  try {
    await c.client.callTool(carolScan, undefined, { timeout: 60000 });
    out.carol.attempts.push('scanned');
    break;
  } catch (e) {
    if (e instanceof UnauthorizedError) {
      // The step-up sign-in happened; finish it and try again.
      out.carol.attempts.push('step-up sign-in');
      await c.transport.finishAuth(carol.takeCode());
      continue;
    }
    out.carol.attempts.push(e instanceof StreamableHTTPError ? `HTTP ${e.code}: ${e.message}` : `${e.name}: ${e.message}`);
    break;
  }
}
out.carol.signIns = carol.signIns;
out.carol.asked = carol.asked;
out.carol.grantedAfter = carol.granted();
// The same with fetch: the status and the challenge as the server sends them.
const raw = await fetch(MCP_URL, {
  method: 'POST',
  headers: { authorization: `Bearer ${carol.tokens().access_token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
  body: JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'tools/call', params: carolScan }),
});
out.carol.fetch = { status: raw.status, challenge: raw.headers.get('www-authenticate'), body: (await raw.text()).slice(0, 200) };
await c.client.close();

out.timings.total = (Date.now() - tStart) / 1000;
out.requests = requests;
console.log(JSON.stringify(out, null, 1));
process.exit(0);
