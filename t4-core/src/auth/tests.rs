use super::*;

fn add_user(s: &mut AuthState, name: &str) {
    let change = AuthChange::UserAdd {
        name: name.into(),
        password: format!("hash-of-{name}"),
        no_password: false,
    };
    assert_eq!(s.change(&change), Ok(true));
}

fn grant(s: &mut AuthState, role: &str, kind: PermissionKind, key: &[u8], range_end: &[u8]) {
    let change = AuthChange::RoleGrantPermission {
        role: role.into(),
        permission: Permission {
            kind,
            key: key.to_vec(),
            range_end: range_end.to_vec(),
        },
    };
    assert_eq!(s.change(&change), Ok(true));
}

fn user_with_role(s: &mut AuthState, user: &str, role: &str) {
    add_user(s, user);
    if !s.roles.contains_key(role) {
        s.change(&AuthChange::RoleAdd { name: role.into() })
            .expect("role add");
    }
    let change = AuthChange::UserGrantRole {
        user: user.into(),
        role: role.into(),
    };
    assert_eq!(s.change(&change), Ok(true));
}

fn enabled_with_root() -> AuthState {
    let mut s = AuthState::default();
    user_with_role(&mut s, ROOT, ROOT);
    assert_eq!(s.change(&AuthChange::Enable), Ok(true));
    s
}

#[test]
fn enabling_needs_a_root_user_with_the_root_role() {
    let mut s = AuthState::default();
    assert_eq!(s.change(&AuthChange::Enable), Err(Error::RootUserNotExist));
    add_user(&mut s, ROOT);
    assert_eq!(s.change(&AuthChange::Enable), Err(Error::RootRoleNotExist));
    // The root role need not be added to be granted.
    let grant = AuthChange::UserGrantRole {
        user: ROOT.into(),
        role: ROOT.into(),
    };
    assert_eq!(s.change(&grant), Ok(true));
    assert_eq!(s.change(&AuthChange::Enable), Ok(true));
    assert!(s.enabled);
    let revision = s.revision;
    assert_eq!(s.change(&AuthChange::Enable), Ok(false));
    assert_eq!(
        s.revision, revision,
        "a change in effect already costs no revision"
    );
}

#[test]
fn user_and_role_errors_are_etcds() {
    let mut s = enabled_with_root();
    let empty = AuthChange::UserAdd {
        name: String::new(),
        password: String::new(),
        no_password: false,
    };
    assert_eq!(s.change(&empty), Err(Error::UserEmpty));
    add_user(&mut s, "alice");
    let again = AuthChange::UserAdd {
        name: "alice".into(),
        password: "x".into(),
        no_password: false,
    };
    assert_eq!(s.change(&again), Err(Error::UserAlreadyExist));
    let unknown_role = AuthChange::UserGrantRole {
        user: "alice".into(),
        role: "nope".into(),
    };
    assert_eq!(s.change(&unknown_role), Err(Error::RoleNotFound));
    let unknown_user = AuthChange::UserGrantRole {
        user: "nobody".into(),
        role: ROOT.into(),
    };
    assert_eq!(s.change(&unknown_user), Err(Error::UserNotFound));
    let not_granted = AuthChange::UserRevokeRole {
        user: "alice".into(),
        role: ROOT.into(),
    };
    assert_eq!(s.change(&not_granted), Err(Error::RoleNotGranted));
    assert_eq!(
        s.change(&AuthChange::RoleAdd {
            name: String::new()
        }),
        Err(Error::RoleEmpty)
    );
    s.change(&AuthChange::RoleAdd { name: "r".into() })
        .expect("role add");
    assert_eq!(
        s.change(&AuthChange::RoleAdd { name: "r".into() }),
        Err(Error::RoleAlreadyExist)
    );
    let revoke = AuthChange::RoleRevokePermission {
        role: "r".into(),
        key: b"a".to_vec(),
        range_end: Vec::new(),
    };
    assert_eq!(s.change(&revoke), Err(Error::PermissionNotGranted));
    // Locking everyone out is refused while enabled, allowed when disabled.
    let del_root = AuthChange::UserDelete { name: ROOT.into() };
    assert_eq!(s.change(&del_root), Err(Error::InvalidAuthMgmt));
    let revoke_root = AuthChange::UserRevokeRole {
        user: ROOT.into(),
        role: ROOT.into(),
    };
    assert_eq!(s.change(&revoke_root), Err(Error::InvalidAuthMgmt));
    let del_root_role = AuthChange::RoleDelete { name: ROOT.into() };
    assert_eq!(s.change(&del_root_role), Err(Error::InvalidAuthMgmt));
    assert_eq!(s.change(&AuthChange::Disable), Ok(true));
    assert_eq!(s.change(&revoke_root), Ok(true));
    assert_eq!(s.change(&del_root), Ok(true));
}

#[test]
fn deleting_a_role_takes_it_from_every_user_and_grants_replace_on_the_same_range() {
    let mut s = enabled_with_root();
    user_with_role(&mut s, "alice", "r");
    grant(&mut s, "r", PermissionKind::Read, b"b", b"c");
    grant(&mut s, "r", PermissionKind::Write, b"a", b"");
    grant(&mut s, "r", PermissionKind::ReadWrite, b"b", b"c");
    let keys: Vec<_> = s.roles["r"]
        .permissions
        .iter()
        .map(|p| (p.key.clone(), p.kind))
        .collect();
    assert_eq!(
        keys,
        vec![
            (b"a".to_vec(), PermissionKind::Write),
            (b"b".to_vec(), PermissionKind::ReadWrite)
        ]
    );
    assert!(s.has_role("alice", "r"));
    assert_eq!(
        s.change(&AuthChange::RoleDelete { name: "r".into() }),
        Ok(true)
    );
    assert!(s.users["alice"].roles.is_empty());
}

#[test]
fn checks_follow_the_union_of_granted_ranges() {
    let mut s = enabled_with_root();
    user_with_role(&mut s, "alice", "r");
    grant(&mut s, "r", PermissionKind::Read, b"/app/", b"/app0");
    grant(&mut s, "r", PermissionKind::ReadWrite, b"/app0", b"/b");
    grant(&mut s, "r", PermissionKind::Write, b"/w", b"");
    grant(&mut s, "r", PermissionKind::Read, b"z", &[0]);
    let alice = Some("alice");
    let read = PermissionKind::Read;
    let write = PermissionKind::Write;
    let ok = |key: &[u8], end: &[u8], kind| s.check(alice, key, end, kind).is_ok();
    assert!(ok(b"/app/x", b"", read));
    assert!(ok(b"/app/", b"/app0", read));
    // Two adjacent grants cover the range across their boundary.
    assert!(ok(b"/app/", b"/b", read));
    assert!(!ok(b"/app/", b"/b\0", read));
    assert!(!ok(b"/app/x", b"", write));
    assert!(ok(b"/app0", b"", write));
    assert!(ok(b"/w", b"", write));
    assert!(!ok(b"/w", b"", read));
    assert!(!ok(b"/w", b"/w\0\0", write));
    assert!(ok(b"/w", b"/w\0", write));
    assert!(ok(b"zz", &[0], read));
    assert!(ok(b"z", b"zzz", read));
    assert!(!ok(b"y", &[0], read));
    assert!(!ok(b"/other", b"", read));
    assert_eq!(
        s.check(None, b"/app/x", b"", read),
        Err(Error::UserEmpty),
        "no token while enabled"
    );
    assert_eq!(
        s.check(Some("ghost"), b"/app/x", b"", read),
        Err(Error::PermissionDenied)
    );
    // Root may do anything; admin checks only pass for root.
    assert!(s.check(Some(ROOT), b"", &[0], write).is_ok());
    assert_eq!(s.check_admin(Some(ROOT)), Ok(()));
    assert_eq!(s.check_admin(alice), Err(Error::PermissionDenied));
    assert_eq!(s.check_admin(None), Err(Error::UserEmpty));
    assert_eq!(s.check_admin(Some("ghost")), Err(Error::UserNotFound));
    // Disabled, everything passes.
    s.change(&AuthChange::Disable).expect("disable");
    assert!(s.check(None, b"/other", b"", write).is_ok());
    assert_eq!(s.check_admin(None), Ok(()));
}

#[test]
fn encoding_round_trips() {
    let mut s = enabled_with_root();
    user_with_role(&mut s, "alice", "r");
    grant(&mut s, "r", PermissionKind::Read, &[0xff, 0], &[0]);
    let bytes = s.encode();
    assert_eq!(AuthState::decode(&bytes), Ok(s));
    assert!(AuthState::decode(b"{").is_err());
}
