# Managed by kmscodec (`kmscodec keys disable-encrypt` / `enable-encrypt`); do not edit.
# The transit keys below are decrypt-only: no new data key may be sealed under them,
# decryption keeps working. Attach this policy to the sidecar's tokens next to
# kmscodec-sidecar. Each path names one key exactly, so it outranks the sidecar
# policy's kmscodec-* glob.
# (no key is decrypt-only)
