# kmscodec key administration: create, read, configure, rotate and delete the namespace KEKs, and
# keep the decrypt-only policy. For operators and automation (`kmscodec keys ...`, Terraform, a
# CI job), never for the sidecar. It grants no data path: no datakey, decrypt, encrypt, export
# or backup, so an administrator cannot read payloads.
#
# Assumes the transit engine is mounted at transit/ and the KEKs are named kmscodec-<namespace>.
# Every path is explained in policies/README.md.
#
# The glob also covers the key's sub-paths:
#   transit/keys/kmscodec-<ns>              create (POST), read (GET), delete (DELETE)
#   transit/keys/kmscodec-<ns>/rotate       rotate (update)
#   transit/keys/kmscodec-<ns>/config       min_decryption_version, deletion_allowed,
#                                           auto_rotate_period, exportable (update)
#   transit/keys/kmscodec-<ns>/trim         destroy versions below min_available_version (update)
#   transit/keys/kmscodec-<ns>/soft-delete  soft delete and restore (delete, update)
# kmscodec calls create, read, rotate, config (deletion_allowed, by `keys shred`) and delete;
# trim and soft-delete are for the manual procedures in docs/providers/vault.md. Trim and delete
# destroy key versions, and with them every payload sealed under them.
path "transit/keys/kmscodec-*" {
  capabilities = ["create", "read", "update", "delete"]
}

# `kmscodec keys list`: the names of the mount's keys, to find the namespaces a "*" entry
# serves. Names only (LIST shows every key of the mount, not just kmscodec-*).
path "transit/keys" {
  capabilities = ["list"]
}

# `kmscodec keys disable-encrypt` / `enable-encrypt` (and `describe`): the policy that makes
# keys decrypt-only. Attached to the sidecar's tokens, so whoever may write it decides what the
# sidecar may do: it is written only by kmscodec, with deny rules only.
path "sys/policies/acl/kmscodec-decrypt-only" {
  capabilities = ["create", "read", "update"]
}

# kmscodec's Vault session with a token: learning the token's TTL when it starts, and renewing
# it during long runs (the same two paths the sidecar policy grants).
path "auth/token/lookup-self" {
  capabilities = ["read"]
}

path "auth/token/renew-self" {
  capabilities = ["update"]
}
