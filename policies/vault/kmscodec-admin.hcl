# kmscodec key administration: create, read, configure, rotate and delete the namespace KEKs.
# For operators and automation (Terraform, a CI job), never for the sidecar. It grants no data
# path: no datakey, decrypt, encrypt, export or backup, so an administrator cannot read payloads.
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
# Trim and delete destroy key versions, and with them every payload sealed under them: run
# them only as documented in docs/providers/vault.md (rotation and retirement).
path "transit/keys/kmscodec-*" {
  capabilities = ["create", "read", "update", "delete"]
}
