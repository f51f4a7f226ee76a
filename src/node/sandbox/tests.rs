//! The sandbox's rules on a real folder tree: roots, symlinks, swaps, the fallback walk.

use super::fs::NO_OPENAT2;
use super::*;
use std::fs;
use std::os::unix::fs::symlink;
use std::sync::atomic::Ordering;

struct Setup {
    _tmp: tempfile::TempDir,
    share: PathBuf,
    data: PathBuf,
    outside: PathBuf,
    dl: PathBuf,
    sb: Sandbox,
}

fn setup(hidden_ok: bool) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let base = fs::canonicalize(tmp.path()).unwrap();
    let share = base.join("share");
    let data = share.join("data");
    let outside = base.join("outside");
    let dl = base.join("dl");
    for d in [&share, &data, &outside, &dl] {
        fs::create_dir_all(d).unwrap();
    }
    let sb = Sandbox::new(
        std::slice::from_ref(&share),
        std::slice::from_ref(&dl),
        &data,
        hidden_ok,
    )
    .unwrap();
    Setup {
        _tmp: tmp,
        share,
        data,
        outside,
        dl,
        sb,
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_missing_root_is_a_start_error_naming_the_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let e = Sandbox::new(&[tmp.path().join("nope")], &[], tmp.path(), false)
        .err()
        .unwrap();
    assert!(
        e.starts_with("--share-root ") && e.contains("no such folder"),
        "{e}"
    );
    let e = Sandbox::new(
        &[tmp.path().into()],
        &[tmp.path().join("x")],
        tmp.path(),
        false,
    )
    .err()
    .unwrap();
    assert!(e.starts_with("--download-root "), "{e}");
}

#[test]
fn reading_stays_under_the_share_roots() {
    let t = setup(false);
    let ok = t.share.join("a.txt");
    fs::write(&ok, b"x").unwrap();
    let a = t.sb.check_add(s(&ok)).unwrap();
    assert_eq!(a.real, ok);
    assert_eq!(a.id.size, 1);

    let out = t.outside.join("b.txt");
    fs::write(&out, b"x").unwrap();
    let e = t.sb.check_add(s(&out)).unwrap_err();
    assert_eq!(e.0, 403);
    assert!(
        e.1.contains("--share-root") && e.1.contains(s(&t.share)),
        "{}",
        e.1
    );

    // A symlink inside that points outside is judged by its target.
    let link = t.share.join("link.txt");
    symlink(&out, &link).unwrap();
    assert_eq!(t.sb.check_add(s(&link)).unwrap_err().0, 403);
    // One that stays inside is fine, and names its target.
    let inner = t.share.join("inner.txt");
    symlink(&ok, &inner).unwrap();
    assert_eq!(t.sb.check_add(s(&inner)).unwrap().real, ok);

    // The data directory is never shared, even under a share root.
    let secret = t.data.join("secrets.json");
    fs::write(&secret, b"{}").unwrap();
    let e = t.sb.check_add(s(&secret)).unwrap_err();
    assert_eq!(e.0, 403);
    assert!(e.1.contains("data directory"), "{}", e.1);

    // `..` is resolved before judging.
    let sneaky = format!("{}/../outside/b.txt", s(&t.share));
    assert_eq!(t.sb.check_add(&sneaky).unwrap_err().0, 403);
    // The root itself is not a file under it.
    assert!(t.sb.read_rule(&t.share).is_err());
}

#[test]
fn hidden_parts_below_the_root_count_only_there() {
    let t = setup(false);
    fs::create_dir_all(t.share.join(".ssh")).unwrap();
    fs::write(t.share.join(".ssh/id"), b"k").unwrap();
    fs::write(t.share.join(".env"), b"k").unwrap();
    for p in [".ssh/id", ".env"] {
        let e = t.sb.check_add(s(&t.share.join(p))).unwrap_err();
        assert_eq!(e.0, 403, "{p}");
        assert!(e.1.contains("--share-hidden"), "{}", e.1);
    }
    let open = setup(true);
    fs::write(open.share.join(".env"), b"k").unwrap();
    assert!(open.sb.check_add(s(&open.share.join(".env"))).is_ok());
    // A hidden folder above the root (tempfile's `.tmpXXXX`) does not count.
    let tmp = tempfile::tempdir().unwrap();
    let root = fs::canonicalize(tmp.path()).unwrap();
    fs::write(root.join("f"), b"x").unwrap();
    let sb = Sandbox::new(std::slice::from_ref(&root), &[], &t.data, false).unwrap();
    assert!(sb.check_add(s(&root.join("f"))).is_ok());
}

#[test]
fn only_regular_files_and_no_pseudo_file_systems() {
    let t = setup(false);
    let e = t.sb.check_add(s(&t.share)).unwrap_err();
    assert_eq!(e.0, 403);
    fs::create_dir(t.share.join("d")).unwrap();
    let e = t.sb.check_add(s(&t.share.join("d"))).unwrap_err();
    assert_eq!(
        e,
        (
            400,
            format!(
                "{} is a folder, not a file: add the files in it (Browse… in the web UI, or `p2pshare share FOLDER`)",
                s(&t.share.join("d"))
            )
        )
    );
    let e = t.sb.check_add(s(&t.share.join("none"))).unwrap_err();
    assert_eq!(e.0, 400);
    assert!(e.1.starts_with("No such file"), "{}", e.1);
    let root = Sandbox::new(&[PathBuf::from("/")], &[], &t.data, false).unwrap();
    let e = root.check_add("/proc/self/status").unwrap_err();
    assert_eq!(e.0, 403, "{}", e.1);
    assert!(e.1.contains("pseudo file system (proc)"), "{}", e.1);
}

#[test]
fn a_swapped_in_symlink_is_never_followed_on_reopen() {
    let t = setup(false);
    let f = t.share.join("f.txt");
    fs::write(&f, b"mine").unwrap();
    let a = t.sb.check_add(s(&f)).unwrap();
    fs::remove_file(&f).unwrap();
    fs::write(t.outside.join("x"), b"theirs").unwrap();
    symlink(t.outside.join("x"), &f).unwrap();
    let e = t.sb.open_read(&a.real, libc::O_RDONLY).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ELOOP), "{e}");
    // A folder on the way swapped for a symlink, too.
    fs::create_dir(t.share.join("sub")).unwrap();
    fs::write(t.share.join("sub/g"), b"g").unwrap();
    let g = t.sb.check_add(s(&t.share.join("sub/g"))).unwrap();
    fs::rename(t.share.join("sub"), t.share.join("sub-old")).unwrap();
    fs::create_dir(t.outside.join("sub")).unwrap();
    fs::write(t.outside.join("sub/g"), b"theirs").unwrap();
    symlink(t.outside.join("sub"), t.share.join("sub")).unwrap();
    assert!(t.sb.open_read(&g.real, libc::O_RDONLY).is_err());
    // The component walk (kernels without openat2) refuses the same.
    let (root, rel) = t.sb.read_rule(&g.real).unwrap();
    NO_OPENAT2.store(true, Ordering::Relaxed);
    let walked = open_beneath(root, &rel, libc::O_RDONLY);
    NO_OPENAT2.store(false, Ordering::Relaxed);
    assert!(walked.is_err());
}

#[test]
fn writing_stays_in_granted_folders() {
    let t = setup(false);
    let dl = t.data.join("users/bob/downloads");
    // Default downloads folder (not created yet), download roots, share roots.
    let p = t.sb.place("bob", &dl.join("a.bin")).unwrap();
    assert_eq!(p.path, dl.join("a.bin"));
    assert!(t.sb.place("bob", &t.dl.join("new/deeper/a.bin")).is_ok());
    assert!(t.sb.place("bob", &t.share.join("a.bin")).is_ok());
    // Elsewhere in the data directory, another user's folder, outside: 403.
    for bad in [
        t.data.join("secrets.json"),
        t.data.join("users/alice/downloads/a.bin"),
        t.outside.join("a.bin"),
        t.outside.join("missing/folders/a.bin"),
        PathBuf::from("/etc/passwd"),
    ] {
        let e = t.sb.place("bob", &bad).unwrap_err();
        assert_eq!(e.0, 403, "{}", bad.display());
        assert!(e.1.contains("--download-root"), "{}", e.1);
    }
    assert!(!t.outside.join("missing").exists());
    // Hidden below the root, and `..` that would climb out.
    assert_eq!(
        t.sb.place("bob", &t.share.join(".ssh/authorized_keys"))
            .unwrap_err()
            .0,
        403
    );
    let climb = t.share.join("nothere/../../outside/a.bin");
    assert!(t.sb.place("bob", &climb).is_err());
    // A symlinked folder is judged by where it leads.
    symlink(&t.outside, t.share.join("out")).unwrap();
    assert_eq!(
        t.sb.place("bob", &t.share.join("out/a.bin")).unwrap_err().0,
        403
    );
    assert_eq!(t.sb.place("bob", Path::new("rel.bin")).unwrap_err().0, 400);
}

#[test]
fn folders_are_made_only_beneath_the_root_and_parts_are_exclusive() {
    let t = setup(false);
    let p = t.sb.place("bob", &t.dl.join("x/y/f.bin")).unwrap();
    let d = p.open_dir(true).unwrap();
    assert!(t.dl.join("x/y").is_dir());
    let part = p.part_name();
    d.create_new(&part).unwrap();
    assert!(d.create_new(&part).is_err(), "exclusive");
    d.unlink(&part).unwrap();
    // A planted symlink at the .part name is not followed.
    let victim = t.outside.join("victim");
    fs::write(&victim, b"keep").unwrap();
    symlink(&victim, t.dl.join("x/y/f.bin.part")).unwrap();
    assert!(d.create_new(&part).is_err());
    assert!(d.open_existing(&part).is_err());
    assert_eq!(d.entry(&part).unwrap(), Some(Entry::Other));
    d.unlink(&part).unwrap();
    assert_eq!(fs::read(&victim).unwrap(), b"keep");
    // A folder on the way swapped for a symlink stops the walk.
    fs::remove_dir_all(t.dl.join("x")).unwrap();
    symlink(&t.outside, t.dl.join("x")).unwrap();
    assert!(p.open_dir(true).is_err());
    assert!(!t.outside.join("y").exists());
    // Rename: never over something, unless a regular file and asked.
    let q = t.sb.place("bob", &t.dl.join("g.bin")).unwrap();
    let d = q.open_dir(true).unwrap();
    fs::write(t.dl.join("g.bin.part"), b"new").unwrap();
    fs::write(t.dl.join("g.bin"), b"old").unwrap();
    let e = d.rename(&q.part_name(), q.name(), false).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
    d.rename(&q.part_name(), q.name(), true).unwrap();
    assert_eq!(fs::read(t.dl.join("g.bin")).unwrap(), b"new");
    fs::write(t.dl.join("g.bin.part"), b"newer").unwrap();
    fs::remove_file(t.dl.join("g.bin")).unwrap();
    symlink(&victim, t.dl.join("g.bin")).unwrap();
    assert!(d.rename(&q.part_name(), q.name(), true).is_err());
    assert_eq!(fs::read(&victim).unwrap(), b"keep");
}

#[test]
fn a_fetched_file_in_a_downloads_folder_is_readable_but_never_addable_by_hand() {
    let t = setup(false);
    let dl = t.data.join("users").join("alice").join("downloads");
    fs::create_dir_all(&dl).unwrap();
    fs::write(dl.join("song.ogg"), b"la").unwrap();
    fs::write(
        t.data.join("users").join("alice").join("standing.json"),
        b"{}",
    )
    .unwrap();
    fs::write(t.data.join("secrets.json"), b"{}").unwrap();
    fs::write(dl.join(".hidden"), b"x").unwrap();
    // Serving and hashing what a fetch tracked: allowed.
    let (_, meta) =
        t.sb.open_read(&dl.join("song.ogg"), libc::O_RDONLY)
            .unwrap();
    assert_eq!(meta.len(), 2);
    // Everything else in the data directory stays closed.
    for p in [
        t.data.join("secrets.json"),
        t.data.join("users").join("alice").join("standing.json"),
        dl.join(".hidden"),
        dl.clone(),
    ] {
        assert!(
            t.sb.open_read(&p, libc::O_RDONLY).is_err(),
            "{}",
            p.display()
        );
    }
    // And nobody adds a download by hand (it may be another user's).
    let e = t.sb.check_add(s(&dl.join("song.ogg"))).unwrap_err();
    assert_eq!(e.0, 403);
    assert!(e.1.contains("data directory"), "{}", e.1);
}

#[test]
fn a_followed_folder_lists_at_most_its_cap_and_says_so() {
    let s = setup(false);
    let big = s.share.join("big");
    fs::create_dir_all(&big).unwrap();
    for i in 0..=MAX_FOLDER_FILES {
        fs::write(big.join(format!("f{i:05}")), b"").unwrap();
    }
    let l = s.sb.list_folder(&big, false).unwrap();
    assert_eq!(l.files.len(), MAX_FOLDER_FILES);
    assert!(!l.complete, "a capped listing forgets nothing");
    assert!(
        l.skipped
            .iter()
            .any(|(_, why)| why.contains("more than 10000 files")),
        "{:?}",
        l.skipped
    );
}

#[test]
fn a_followed_folder_is_walked_sixteen_levels_deep_and_no_further() {
    let s = setup(true);
    let top = s.share.join("deep");
    let mut at = top.clone();
    for level in 1..=17 {
        at = at.join(format!("l{level}"));
        fs::create_dir_all(&at).unwrap();
        fs::write(at.join(format!("at{level}")), b"x").unwrap();
    }
    fs::write(top.join(".hidden-top"), b"h").unwrap();
    let l = s.sb.list_folder(&top, true).unwrap();
    let names: Vec<String> = l
        .files
        .iter()
        .map(|f| f.rel.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(names.contains(&"at16".to_string()), "{names:?}");
    assert!(!names.contains(&"at17".to_string()), "{names:?}");
    assert!(
        !names.contains(&".hidden-top".to_string()),
        "no dot entry, even with --share-hidden"
    );
    assert!(l.skipped.iter().any(|(_, why)| why.contains("16 levels")));
    // Not recursive: the top level only.
    assert!(s.sb.list_folder(&top, false).unwrap().files.is_empty());
    // The data directory is never followed, nor a folder holding it.
    assert_eq!(
        s.sb.check_folder(s.data.to_str().unwrap()).unwrap_err().0,
        403
    );
    assert_eq!(
        s.sb.check_folder(s.share.to_str().unwrap()).unwrap_err().0,
        403
    );
    assert!(s.sb.list_folder(&s.data, false).is_err());
}
