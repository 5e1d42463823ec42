// A local OpenID provider for Holdfast's sign-in tests: npm `oidc-provider` (its development
// login and consent pages), behind a small front that can misbehave on purpose so that the
// relying party's refusals can be tested with a real provider's tokens.
//
//   node oidc_provider.mjs <port> <redirect_uri> <client_id> <client_secret> [inner port]
//
// Prints "ready <issuer>" once it answers. Control endpoints (test only):
//   POST /__mode   body: normal | wrong_issuer | wrong_audience | bad_signature | alg_none |
//                  hs256 | expired | replay_nonce | reuse_code | swap_state | rotate |
//                  hold (the callback is not sent to the browser, only kept for /__last)
//   POST /__groups body: {"<login>": ["group", ...]}   the groups claim of each account
//   GET  /__last   the last callback URL sent to the browser
import http from 'node:http';
import Provider from 'oidc-provider';
import * as jose from 'jose';

const [port, redirectUri, clientId, clientSecret] = process.argv.slice(2);
const issuer = `http://127.0.0.1:${port}`;
const innerPort = Number(process.argv[6] || Number(port) + 1);

async function rsaKey(kid) {
  const { privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
  const jwk = await jose.exportJWK(privateKey);
  return { kid, privateKey, jwk: { ...jwk, kid, alg: 'RS256', use: 'sig' } };
}
const k1 = await rsaKey('k1');
const k2 = await rsaKey('k2');
const publicOf = ({ d, p, q, dp, dq, qi, ...pub }) => pub;

let mode = 'normal';
let rotated = false;
let groups = {};
let lastCallback = null;
let lastIdToken = null;
let lastCode = null;

const provider = new Provider(issuer, {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: [redirectUri],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  jwks: { keys: [k1.jwk] },
  pkce: { required: () => true },
  scopes: ['openid', 'email', 'profile', 'groups'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
    groups: ['groups'],
  },
  conformIdTokenClaims: false,
  cookies: { keys: ['holdfast-test-cookie-key'] },
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        return {
          sub: id,
          email: id,
          email_verified: !id.startsWith('unverified'),
          name: id.split('@')[0],
          groups: groups[id] || [],
        };
      },
    };
  },
});
provider.on('server_error', (ctx, err) => console.error('provider error', err));

const inner = http.createServer(provider.callback());
await new Promise((r) => inner.listen(innerPort, '127.0.0.1', r));

function readBody(req) {
  return new Promise((resolve) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
  });
}

// Forwards a request to the provider; returns its status, headers and body.
function forward(req, body) {
  return new Promise((resolve, reject) => {
    const headers = { ...req.headers, 'content-length': String(body.length) };
    const out = http.request(
      { host: '127.0.0.1', port: innerPort, path: req.url, method: req.method, headers },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
      },
    );
    out.on('error', reject);
    out.end(body);
  });
}

const b64url = (s) => Buffer.from(s).toString('base64url');

// Rewrites a genuine ID token as the mode says.
async function tamper(idToken) {
  const claims = jose.decodeJwt(idToken);
  const now = Math.floor(Date.now() / 1000);
  const sign = (c, key = k1) => new jose.SignJWT(c)
    .setProtectedHeader({ alg: 'RS256', kid: key.kid, typ: 'JWT' })
    .sign(key.privateKey);
  switch (mode) {
    case 'wrong_issuer': return sign({ ...claims, iss: 'http://127.0.0.1:1/evil' });
    case 'wrong_audience': return sign({ ...claims, aud: 'someone-else' });
    case 'expired': return sign({ ...claims, iat: now - 7200, exp: now - 3600 });
    case 'rotate': return sign(claims, k2);
    case 'bad_signature': {
      const [h, p, s] = idToken.split('.');
      const flipped = (s[5] === 'A' ? 'B' : 'A');
      return `${h}.${p}.${s.slice(0, 5)}${flipped}${s.slice(6)}`;
    }
    case 'alg_none': {
      const [, p] = idToken.split('.');
      return `${b64url(JSON.stringify({ alg: 'none', typ: 'JWT' }))}.${p}.`;
    }
    case 'hs256':
      return new jose.SignJWT(claims)
        .setProtectedHeader({ alg: 'HS256', kid: 'k1' })
        .sign(new TextEncoder().encode(clientSecret));
    case 'replay_nonce': return lastIdToken;
    default: return idToken;
  }
}

const front = http.createServer(async (req, res) => {
  try {
    const body = await readBody(req);
    const path = req.url.split('?')[0];
    if (path === '/__mode') {
      mode = body.toString().trim();
      if (mode === 'rotate') rotated = true;
      res.end('ok');
      return;
    }
    if (path === '/__groups') {
      groups = JSON.parse(body.toString());
      res.end('ok');
      return;
    }
    if (path === '/__held') {
      res.setHeader('content-type', 'text/html');
      res.end('<!doctype html><title>held</title><p id="held">held</p>');
      return;
    }
    if (path === '/__last') {
      res.end(lastCallback || '');
      return;
    }
    let sent = body;
    if (path === '/token' && req.method === 'POST') {
      const form = new URLSearchParams(body.toString());
      const code = form.get('code');
      if (mode === 'reuse_code' && lastCode) form.set('code', lastCode);
      else lastCode = code;
      sent = Buffer.from(form.toString());
    }
    const answer = await forward(req, sent);
    let out = answer.body;
    const headers = { ...answer.headers };
    if (path === '/token' && answer.status === 200) {
      const json = JSON.parse(out.toString());
      const genuine = json.id_token;
      json.id_token = await tamper(genuine);
      if (mode === 'normal' || mode === 'rotate') lastIdToken = genuine;
      out = Buffer.from(JSON.stringify(json));
    }
    if (path === '/jwks' && rotated && answer.status === 200) {
      out = Buffer.from(JSON.stringify({ keys: [publicOf(k1.jwk), publicOf(k2.jwk)] }));
    }
    if (headers.location && headers.location.startsWith(redirectUri)) {
      const url = new URL(headers.location);
      if (mode === 'swap_state') url.searchParams.set('state', 'not-the-state-that-was-sent');
      lastCallback = url.toString();
      headers.location = mode === 'hold' ? `${issuer}/__held` : lastCallback;
    }
    delete headers['content-length'];
    delete headers['transfer-encoding'];
    headers['content-length'] = String(out.length);
    res.writeHead(answer.status, headers);
    res.end(out);
  } catch (e) {
    console.error(e);
    res.statusCode = 500;
    res.end(String(e));
  }
});
front.listen(Number(port), '127.0.0.1', () => console.log(`ready ${issuer}`));
