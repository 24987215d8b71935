# kmscodec sidecar: mint and unwrap data keys under the namespace KEKs, and keep its own token
# alive. Nothing else: no key creation, rotation, reading, export, encrypt or plaintext datakey.
#
# Assumes the transit engine is mounted at transit/ and the namespace KEKs are named
# kmscodec-<namespace> (the default template of the "*" namespace entry). Change both prefixes
# together if your mount or naming differ. Every path is explained in policies/README.md.

# Mint a data key. Only its wrapped form comes back from this path.
path "transit/datakey/wrapped/kmscodec-*" {
  capabilities = ["update"]
}

# Unwrap a data key: every decode of a payload whose data key is not cached yet, and once after
# each mint (the sidecar never calls datakey/plaintext).
path "transit/decrypt/kmscodec-*" {
  capabilities = ["update"]
}

# Readiness checks, and telling an expired or revoked token (refused) from a policy denial
# (allowed) after a 403.
path "auth/token/lookup-self" {
  capabilities = ["read"]
}

# Renewing the token before it expires.
path "auth/token/renew-self" {
  capabilities = ["update"]
}
