//! Unit tests of `src/keys/local_file.rs`.

use super::*;

fn provider() -> (tempfile::TempDir, LocalFile) {
    let dir = tempfile::tempdir().unwrap();
    let provider = LocalFile::create(dir.path().join("keys/keyring.json"), "dev").unwrap();
    (dir, provider)
}

#[tokio::test]
async fn wrap_binds_namespace_key_and_version() {
    let (_dir, provider) = provider();
    let generated = provider.generate_data_key("alpha", "dev").await.unwrap();
    assert_eq!(
        generated.kek,
        KekRef {
            key: "dev".into(),
            version: 1
        }
    );
    assert_eq!(generated.wrapped.as_bytes().len(), WRAPPED_LEN);
    let unwrapped = provider
        .unwrap_data_key("alpha", &generated.kek, &generated.wrapped)
        .await
        .unwrap();
    assert_eq!(
        unwrapped.expose_secret(),
        generated.plaintext.expose_secret()
    );
    assert_eq!(
        provider
            .unwrap_data_key("beta", &generated.kek, &generated.wrapped)
            .await
            .unwrap_err(),
        ProviderError::Invalid
    );
    let other_version = KekRef {
        key: "dev".into(),
        version: 2,
    };
    assert!(matches!(
        provider
            .unwrap_data_key("alpha", &other_version, &generated.wrapped)
            .await,
        Err(ProviderError::NotFound(_))
    ));
}

#[test]
fn file_is_private_and_refused_when_readable_by_others() {
    let (_dir, provider) = provider();
    let mode = fs::metadata(provider.path()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let dir_mode = fs::metadata(provider.path().parent().unwrap())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(dir_mode, 0o700);
    fs::set_permissions(provider.path(), fs::Permissions::from_mode(0o644)).unwrap();
    let error = LocalFile::open(provider.path()).unwrap_err().to_string();
    assert!(error.contains("accessible by group or others"), "{error}");
    assert!(error.contains("chmod 600"), "{error}");
}

#[tokio::test]
async fn a_chmod_is_noticed_on_the_next_call_although_the_file_did_not_change() {
    let (_dir, provider) = provider();
    provider.generate_data_key("orders", "dev").await.unwrap();
    let modified = fs::metadata(provider.path()).unwrap().modified().unwrap();
    fs::set_permissions(provider.path(), fs::Permissions::from_mode(0o640)).unwrap();
    assert_eq!(
        fs::metadata(provider.path()).unwrap().modified().unwrap(),
        modified
    );
    let error = provider
        .generate_data_key("orders", "dev")
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("accessible by group or others"), "{error}");
    fs::set_permissions(provider.path(), fs::Permissions::from_mode(0o600)).unwrap();
    provider.generate_data_key("orders", "dev").await.unwrap();
}

#[test]
fn concurrent_writers_through_separate_handles_lose_no_change() {
    let (_dir, provider) = provider();
    let path = provider.path().to_path_buf();
    const ROUNDS: u32 = 25;
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || {
                // Each thread has its own handle, as separate processes would.
                let file = LocalFile::open(&path).unwrap();
                for _ in 0..ROUNDS {
                    file.rotate_key("dev").unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    let version = LocalFile::open(&path).unwrap().rotate_key("dev").unwrap();
    assert_eq!(version, 1 + 4 * ROUNDS + 1, "a rotation was lost");
    let lock = fs::metadata(path.with_file_name("keyring.json.lock")).unwrap();
    assert_eq!(lock.permissions().mode() & 0o777, 0o600);
}

#[tokio::test]
async fn rotation_keeps_old_versions_and_file_never_shows_in_debug() {
    let (_dir, provider) = provider();
    let old = provider.generate_data_key("ns", "dev").await.unwrap();
    assert_eq!(provider.rotate_key("dev").unwrap(), 2);
    let new = provider.generate_data_key("ns", "dev").await.unwrap();
    assert_eq!(new.kek.version, 2);
    provider
        .unwrap_data_key("ns", &old.kek, &old.wrapped)
        .await
        .unwrap();
    let description = provider.describe("dev").await.unwrap();
    assert_eq!(description.primary_version, Some(2));
    assert_eq!(description.versions.len(), 2);
    assert!(!format!("{provider:?}").contains("material"));
}

#[tokio::test]
async fn changes_by_another_writer_are_picked_up() {
    let (_dir, provider) = provider();
    let other = LocalFile::open(provider.path()).unwrap();
    // Give the file a distinct modification time.
    std::thread::sleep(std::time::Duration::from_millis(20));
    other.set_encrypt_enabled("dev", false).unwrap();
    assert!(matches!(
        provider.generate_data_key("ns", "dev").await,
        Err(ProviderError::Disabled(_))
    ));
}

#[tokio::test]
async fn shredded_keys_are_unusable_then_destroyed_unless_cancelled() {
    let (_dir, provider) = provider();
    provider.create_key("other").unwrap();
    let old = provider.generate_data_key("ns", "dev").await.unwrap();
    let request = ShredRequest {
        pending_days: 7,
        immediately: false,
    };
    let shredded = provider.shred_kek("dev", request).await.unwrap();
    assert!(!shredded.destroyed_now);
    assert!(shredded.destroy_after.is_some());
    assert!(matches!(
        provider.generate_data_key("ns", "dev").await,
        Err(ProviderError::Destroyed(_))
    ));
    assert!(matches!(
        provider.unwrap_data_key("ns", &old.kek, &old.wrapped).await,
        Err(ProviderError::Destroyed(_))
    ));
    let described = provider.describe("dev").await.unwrap();
    assert!(!described.encrypt_enabled && !described.decrypt_enabled);
    // Cancelled within the waiting period: as before.
    assert!(provider.cancel_destruction("dev").unwrap());
    provider
        .unwrap_data_key("ns", &old.kek, &old.wrapped)
        .await
        .unwrap();
    // Due: every write removes the material of due keys (this one is due as it is
    // written), and a cancel is too late.
    let past = time::OffsetDateTime::now_utc() - time::Duration::seconds(1);
    provider.schedule_destruction("dev", past).unwrap();
    assert!(matches!(
        provider.cancel_destruction("dev"),
        Err(ProviderError::NotFound(_))
    ));
    assert_eq!(provider.key_names().unwrap(), vec!["other".to_owned()]);
    let text = fs::read_to_string(provider.path()).unwrap();
    assert!(!text.contains("\"dev\""), "{text}");
    // Immediately: gone at once.
    let now = ShredRequest {
        pending_days: 7,
        immediately: true,
    };
    assert!(
        provider
            .shred_kek("other", now)
            .await
            .unwrap()
            .destroyed_now
    );
    assert!(matches!(
        provider.generate_data_key("ns", "other").await,
        Err(ProviderError::NotFound(_))
    ));
}

#[test]
fn corrupt_files_are_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.json");
    write_atomically(&path, b"{\"format\":\"other\",\"keys\":{}}").unwrap();
    let error = LocalFile::open(&path).unwrap_err().to_string();
    assert!(error.contains("format"), "{error}");
    write_atomically(&path, b"not json").unwrap();
    assert!(
        LocalFile::open(&path)
            .unwrap_err()
            .to_string()
            .contains("not a valid keyring")
    );
}
