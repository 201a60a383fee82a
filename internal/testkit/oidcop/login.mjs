// login.mjs: the sign-in steps of package oidcop's test OpenID Provider
// (see its package doc) for a test written in JavaScript, e.g. one that
// drives the MCP TypeScript SDK: give login() the authorization URL the
// SDK passed to redirectToAuthorization, get back the redirect to the
// client's redirect_uri (with code and state, or error). Node 18+ (fetch).

// login signs user in at authorizeURL and returns the redirect (a URL)
// that leaves the provider.
export async function login(authorizeURL, user) {
  const op = new URL(authorizeURL).origin;
  const cookies = new Map();
  let url = new URL(authorizeURL);
  let init = { method: 'GET' };
  for (let step = 0; step < 12; step += 1) {
    const headers = { ...(init.headers || {}) };
    if (cookies.size) {
      headers.cookie = [...cookies].map(([k, v]) => `${k}=${v}`).join('; ');
    }
    const res = await fetch(url, { ...init, headers, redirect: 'manual' });
    for (const c of res.headers.getSetCookie()) {
      const [nv] = c.split(';');
      const i = nv.indexOf('=');
      cookies.set(nv.slice(0, i).trim(), nv.slice(i + 1));
    }
    const body = await res.text();
    if (res.status >= 300 && res.status < 400) {
      const next = new URL(res.headers.get('location'), url);
      if (next.origin !== op) {
        return next;
      }
      url = next;
      init = { method: 'GET' };
    } else if (res.status === 200 && init.method === 'GET' && /^\/interaction\/[^/]+$/.test(url.pathname)) {
      url = new URL(`${url.pathname}/login`, op);
      init = {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ login: user }).toString(),
      };
    } else {
      throw new Error(`login: ${init.method} ${url.pathname}: ${res.status}: ${body.replace(/<[^>]*>/g, ' ').replace(/\s+/g, ' ').slice(0, 500)}`);
    }
  }
  throw new Error('login: more than 12 steps on the provider');
}
