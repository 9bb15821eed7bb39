//! Where the test cluster's binaries are looked for.

use pg_store::testkit::find_bindir_with;

#[test]
fn postgres_binaries_are_found_in_order_and_pg_bin_is_never_replaced() {
    let root = tempfile::tempdir().unwrap();
    let dir = |name: &str, with_initdb: bool| {
        let d = root.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        if with_initdb {
            std::fs::write(d.join("initdb"), b"").unwrap();
        }
        d
    };
    let (explicit, config, debian_old, debian_new, on_path, empty) = (
        dir("explicit", true),
        dir("config", true),
        dir("15", true),
        dir("16", true),
        dir("path", true),
        dir("empty", false),
    );
    let path = std::env::join_paths([&empty, &on_path]).unwrap();
    let debian = [debian_new.clone(), debian_old];
    assert_eq!(
        find_bindir_with(
            Some(explicit.clone().into()),
            Some(config.clone()),
            &debian,
            Some(path.clone())
        ),
        Some(explicit)
    );
    // PG_BIN without initdb: refused, not replaced by another install.
    assert_eq!(
        find_bindir_with(
            Some(empty.clone().into()),
            Some(config.clone()),
            &debian,
            Some(path.clone())
        ),
        None
    );
    assert_eq!(
        find_bindir_with(None, Some(config.clone()), &debian, Some(path.clone())),
        Some(config)
    );
    assert_eq!(
        find_bindir_with(None, Some(empty.clone()), &debian, Some(path.clone())),
        Some(debian_new)
    );
    assert_eq!(find_bindir_with(None, None, &[], Some(path)), Some(on_path));
    assert_eq!(find_bindir_with(None, Some(empty), &[], None), None);
}
