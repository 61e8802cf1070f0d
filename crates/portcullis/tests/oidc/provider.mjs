// A real OpenID provider for the tests: the npm package `oidc-provider` (a certified
// implementation) with its development interactions (a sign-in form whose "login" is the
// account id, any password, then a consent form). Accounts and their claims come from a JSON
// file; the ID token is signed RS256 with a key made at start.
//
// usage: node provider.mjs PORT REDIRECT_URI ACCOUNTS.json
// NODE_PATH must reach oidc-provider (.ci/run installs it under /var/cache/portcullis-npm).
import { readFileSync } from 'node:fs';
import { generateKeyPairSync } from 'node:crypto';
import { createRequire } from 'node:module';

const require = createRequire(process.env.OIDC_PROVIDER_MODULES + '/');
const { default: Provider } = await import(require.resolve('oidc-provider'));

const [port, redirect, accountsFile] = process.argv.slice(2);
const accounts = JSON.parse(readFileSync(accountsFile, 'utf8'));
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'test-key-1', use: 'sig', alg: 'RS256' };

const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients: [{
    client_id: 'portcullis',
    client_secret: 'portcullis-client-secret-1',
    redirect_uris: [redirect],
    grant_types: ['authorization_code'],
    response_types: ['code'],
  }],
  jwks: { keys: [jwk] },
  scopes: ['openid', 'profile', 'email', 'groups'],
  claims: { openid: ['sub'], profile: ['preferred_username', 'name'], email: ['email'], groups: ['groups'] },
  pkce: { required: () => true },
  cookies: { keys: ['portcullis-test-cookie-key'] },
  features: { devInteractions: { enabled: true } },
  async findAccount(ctx, id) {
    const a = accounts[id];
    if (!a) return undefined;
    return { accountId: id, async claims() { return { sub: id, ...a }; } };
  },
});
provider.listen(Number(port), '127.0.0.1', () => console.log('oidc-provider ready'));
