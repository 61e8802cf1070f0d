#!/usr/bin/env python3
"""Makes and checks sigstore signatures the way cosign and containers/image write them, for the
signature tests — an implementation independent of portcullis' verifier (Python
`cryptography`).

  keygen DIR NAME {p256|ed25519}      NAME.key (PKCS#8 PEM) and NAME.pub (PEM SubjectPublicKeyInfo,
                                      the format of cosign.pub)
  sign OUT DIGEST REFERENCE KEY...    an OCI layout at OUT whose image `sig` is the signature
                                      attachment of DIGEST: one simplesigning layer per KEY, the
                                      base64 signature in `dev.cosignproject.cosign/signature`.
                                      KEY may be `path` or `path=OTHER_DIGEST` (a payload that
                                      names another image), or `path*N` (N copies of its layer)
  referrer OUT DIGEST:SIZE:TYPE REFERENCE KEY
                                      the same signature as an OCI 1.1 referrer of DIGEST
                                      (`subject`, cosign's signature `artifactType`)
  attachment OUT MEDIA_TYPE           an OCI layout at OUT whose image `sig` has one layer of
                                      MEDIA_TYPE (an attestation or SBOM, as cosign attaches them)
  verify DIR DIGEST PUB               checks a `skopeo copy ... dir:DIR` of a signature object:
                                      some layer's payload names DIGEST and its signature verifies
                                      with PUB; prints `verified <digest>`
"""
import base64
import hashlib
import json
import os
import sys

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
ANNOTATION = "dev.cosignproject.cosign/signature"


def keygen(d, name, kind):
    key = ec.generate_private_key(ec.SECP256R1()) if kind == "p256" else ed25519.Ed25519PrivateKey.generate()
    priv = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    pub = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    open(os.path.join(d, name + ".key"), "wb").write(priv)
    open(os.path.join(d, name + ".pub"), "wb").write(pub)


def sign_bytes(key, payload):
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(payload, ec.ECDSA(hashes.SHA256()))
    return key.sign(payload)


def put(out, data):
    d = hashlib.sha256(data).hexdigest()
    open(os.path.join(out, "blobs", "sha256", d), "wb").write(data)
    return "sha256:" + d, len(data)


def start_layout(out):
    os.makedirs(os.path.join(out, "blobs", "sha256"), exist_ok=True)
    open(os.path.join(out, "oci-layout"), "w").write('{"imageLayoutVersion":"1.0.0"}')


def finish_layout(out, manifest):
    """Stores the manifest as the layout's image `sig`; returns its digest."""
    m, mn = put(out, manifest)
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": m, "size": mn,
        "annotations": {"org.opencontainers.image.ref.name": "sig"}}]}
    open(os.path.join(out, "index.json"), "w").write(json.dumps(index))
    return m


def payload_for(digest, reference):
    # cosign's simplesigning payload (sigstore/sigstore pkg/signature/payload).
    return json.dumps({
        "critical": {
            "identity": {"docker-reference": reference},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature",
        },
        "optional": None,
    }, separators=(",", ":")).encode()


def sign(out, digest, reference, keys, subject=None):
    start_layout(out)
    layers, diff_ids = [], []
    for spec in keys:
        spec, _, copies = spec.partition("*")
        path, _, named = spec.partition("=")
        key = serialization.load_pem_private_key(open(path, "rb").read(), password=None)
        payload = payload_for(named or digest, reference)
        d, n = put(out, payload)
        sig = base64.b64encode(sign_bytes(key, payload)).decode()
        for _ in range(int(copies or 1)):
            layers.append({"mediaType": SIMPLESIGNING, "digest": d, "size": n, "annotations": {ANNOTATION: sig}})
            diff_ids.append(d)
    config = json.dumps({"architecture": "", "os": "", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    c, cn = put(out, config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": c, "size": cn},
        "layers": layers,
    }
    if subject:
        d, size, media_type = subject.rsplit(":", 2)
        manifest["artifactType"] = "application/vnd.dev.cosign.artifact.sig.v1+json"
        manifest["subject"] = {"mediaType": media_type, "digest": d, "size": int(size)}
    manifest = json.dumps(manifest).encode()
    print(finish_layout(out, manifest))


def attachment(out, media_type):
    start_layout(out)
    d, n = put(out, b'{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[]}')
    c, cn = put(out, b'{"architecture":"","os":"","config":{},"rootfs":{"type":"layers","diff_ids":[]}}')
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": c, "size": cn},
        "layers": [{"mediaType": media_type, "digest": d, "size": n}],
    }).encode()
    print(finish_layout(out, manifest))


def verify(d, digest, pub_path):
    pub = serialization.load_pem_public_key(open(pub_path, "rb").read())
    manifest = json.load(open(os.path.join(d, "manifest.json")))
    for layer in manifest["layers"]:
        if layer["mediaType"] != SIMPLESIGNING:
            continue
        payload = open(os.path.join(d, layer["digest"].split(":")[1]), "rb").read()
        if "sha256:" + hashlib.sha256(payload).hexdigest() != layer["digest"]:
            continue
        sig = base64.b64decode(layer["annotations"][ANNOTATION])
        try:
            if isinstance(pub, ec.EllipticCurvePublicKey):
                pub.verify(sig, payload, ec.ECDSA(hashes.SHA256()))
            else:
                pub.verify(sig, payload)
        except Exception:
            continue
        if json.loads(payload)["critical"]["image"]["docker-manifest-digest"] == digest:
            print("verified", digest)
            return
    sys.exit("no signature of %s verifies" % digest)


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "keygen":
        keygen(*args)
    elif cmd == "sign":
        sign(args[0], args[1], args[2], args[3:])
    elif cmd == "referrer":
        sign(args[0], args[1].rsplit(":", 2)[0], args[2], args[3:], subject=args[1])
    elif cmd == "attachment":
        attachment(*args)
    elif cmd == "verify":
        verify(*args)
    else:
        sys.exit(__doc__)
