// A CI platform's identity token issuer for the tests, on the npm package `oidc-provider`: a job
// (the client `ci-job`) asks with the client credentials grant and gets an RS256 JWT access token
// for the audience `portcullis` carrying GitHub Actions' documented claims for its repository and
// ref (JOB_CLAIMS, JSON), as a runner's ACTIONS_ID_TOKEN_REQUEST_URL hands one out. Discovery
// and the JWKS are the provider's own.
//
// usage: JOB_CLAIMS='{"repository": …}' node ci-issuer.mjs PORT
// OIDC_PROVIDER_MODULES must reach oidc-provider (.ci/run installs it under /var/cache/portcullis-npm).
import { generateKeyPairSync } from 'node:crypto';
import { createRequire } from 'node:module';

const require = createRequire(process.env.OIDC_PROVIDER_MODULES + '/');
const { default: Provider } = await import(require.resolve('oidc-provider'));

const [port] = process.argv.slice(2);
const claims = JSON.parse(process.env.JOB_CLAIMS);
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'ci-key-1', use: 'sig', alg: 'RS256' };

const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients: [{
    client_id: 'ci-job',
    client_secret: 'ci-job-secret-0123456789',
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
  }],
  jwks: { keys: [jwk] },
  features: {
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => 'urn:portcullis',
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: 'pull',
        audience: 'portcullis',
        accessTokenTTL: 300,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'RS256' } },
      }),
    },
  },
  extraTokenClaims: async () => claims,
});
provider.listen(Number(port), '127.0.0.1', () => console.log('ci issuer ready'));
