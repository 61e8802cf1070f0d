// Attaches a sigstore bundle to an image as an OCI referrer with npm `@sigstore/oci`, the
// library GitHub's artifact-attestation actions use: it follows the registry's challenge
// literally (asks the token server for exactly the scope the upload POST names, then uses that
// one token for the whole upload, reads of the subject manifest included).
//
// usage: node attach.mjs IMAGE_NAME IMAGE_DIGEST BUNDLE_FILE USERNAME PASSWORD
// prints the referrer's descriptor as JSON. NODE_PATH-free: SIGSTORE_MODULES names the folder.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(process.env.SIGSTORE_MODULES + '/');
const { attachArtifactToImage } = require(require.resolve('@sigstore/oci'));

const [imageName, imageDigest, bundleFile, username, password] = process.argv.slice(2);
try {
  const descriptor = await attachArtifactToImage({
    imageName,
    imageDigest,
    artifact: readFileSync(bundleFile),
    mediaType: 'application/vnd.dev.sigstore.bundle.v0.3+json',
    annotations: { 'dev.sigstore.bundle.predicateType': 'https://slsa.dev/provenance/v1' },
    credentials: { username, password },
  });
  console.log(JSON.stringify(descriptor));
} catch (e) {
  console.error(`attach failed: ${e.message}`);
  process.exit(1);
}
