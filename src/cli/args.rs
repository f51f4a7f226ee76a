//! The remote command line's arguments (`docs/cli.md`): which command, its
//! flags and operands, and `--node` anywhere. Pure: no I/O, so every
//! spelling is tested here. Errors are usage errors (exit 2).

use super::{code, Failure};

/// What the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cmd {
    Login {
        username: Option<String>,
        password_stdin: bool,
        register: bool,
        display_name: Option<String>,
    },
    Logout,
    Status,
    Share {
        paths: Vec<String>,
        recursive: bool,
        force: bool,
        /// Share a folder's current files without following it.
        once: bool,
    },
    Unshare {
        names: Vec<String>,
        forget: bool,
    },
    Ls {
        query: Option<String>,
    },
    Get {
        what: String,
        to: Option<String>,
        overwrite: bool,
        /// Keep the downloaded file private (`share: false`).
        no_share: bool,
    },
    /// `--help` for one command: its text.
    Help(String),
}

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// `--node`, if given (else `P2PSHARE_NODE`, the saved login, the default).
    pub node: Option<String>,
    pub cmd: Cmd,
}

/// A flag: its name, whether it takes a value, its help line.
type Flag = (&'static str, bool, &'static str);

/// One command: its word, usage line, what it does, its flags.
struct Spec {
    name: &'static str,
    usage: &'static str,
    what: &'static str,
    flags: &'static [Flag],
}

const fn spec(
    name: &'static str,
    usage: &'static str,
    what: &'static str,
    flags: &'static [Flag],
) -> Spec {
    Spec {
        name,
        usage,
        what,
        flags,
    }
}

const COMMANDS: &[Spec] = &[
    spec(
        "login",
        "login [USERNAME] [--password-stdin] [--register [--display-name NAME]]",
        "log in on the node and join the network\n(the password is asked for with echo off, read from stdin with --password-stdin,\nor taken from P2PSHARE_PASSWORD)",
        &[
            ("--password-stdin", false, "read the password from the first line of stdin"),
            ("--register", false, "create the account first"),
            ("--display-name", true, "the name others see (with --register; default USERNAME)"),
        ],
    ),
    spec("logout", "logout", "log out on the node and forget the saved login", &[]),
    spec("status", "status", "who you are, the link to the coordinator, your files and downloads", &[]),
    spec(
        "share",
        "share PATH... [-r] [--force] [--once]",
        "track and publish files; a folder shares every regular file in it and is followed:\nfiles added to it later are shared too (`p2pshare unshare DIR` stops)",
        &[
            ("--recursive", false, "also the files in sub-folders (-r)"),
            ("--force", false, "publish even if the network already has the same file"),
            ("--once", false, "share a folder's current files without following it"),
        ],
    ),
    spec(
        "unshare",
        "unshare NAME|DIR... [--forget]",
        "stop offering files to the network; a followed folder's path stops following it\n(its files stay shared: unshare them by name)",
        &[("--forget", false, "also stop tracking them")],
    ),
    spec("ls", "ls [QUERY]", "files on the network: name, size, hosts, SHA-256 prefix", &[]),
    spec(
        "get",
        "get NAME|SHA256 [--to DIR] [--overwrite] [--no-share]",
        "download a file from the network with a live progress bar\n(SHA256 may be a prefix of 8 or more hex digits, as `ls` shows it)",
        &[
            ("--to", true, "the folder to save into (default: your downloads folder on the node)"),
            ("--overwrite", false, "replace a file of the same name there"),
            ("--no-share", false, "keep the file private (by default it is shared once downloaded, so it gains sources)"),
        ],
    ),
];

/// The command word if `args` are for the remote command line: the first
/// argument, after any `--node ADDR`.
pub fn remote_command(args: &[String]) -> Option<&'static str> {
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        if a == "--node" {
            i += 2;
            continue;
        }
        if a.starts_with("--node=") {
            i += 1;
            continue;
        }
        return COMMANDS.iter().map(|c| c.name).find(|c| *c == a);
    }
    None
}

/// The lines `p2pshare --help` adds for these commands.
pub fn summary() -> String {
    let mut s = String::new();
    for c in COMMANDS {
        let first = c.what.lines().next().unwrap_or_default();
        s.push_str(&format!("  {}\n      {first}\n", c.usage));
    }
    s
}

fn help(name: &str) -> String {
    let Some(Spec {
        usage, what, flags, ..
    }) = COMMANDS.iter().find(|c| c.name == name)
    else {
        return String::new();
    };
    let mut s = format!("Usage: p2pshare {usage} [--node ADDR]\n\n{what}\n\nFlags:\n");
    for (f, takes, h) in flags.iter() {
        let left = if *takes {
            format!("{f} VALUE")
        } else {
            (*f).to_owned()
        };
        s.push_str(&format!("  {left:<22} {h}\n"));
    }
    s.push_str(&format!(
        "  {:<22} the node's client API (env P2PSHARE_NODE; default: the saved login's,\n  {:<22} else http://127.0.0.1:5501)\n\nExit codes: 0 ok, 1 error, 2 usage, 3 not logged in, 4 not found, 5 ambiguous name\n(see docs/cli.md)",
        "--node ADDR", ""
    ));
    s
}

fn usage_err(cmd: &str, msg: impl std::fmt::Display) -> Failure {
    Failure::new(code::USAGE, format!("{msg}; see `p2pshare {cmd} --help`"))
}

/// Parses the arguments of `cmd` (found by [`remote_command`]).
pub fn parse(cmd: &str, args: &[String]) -> Result<Invocation, Failure> {
    let Some(Spec { flags: spec, .. }) = COMMANDS.iter().find(|c| c.name == cmd) else {
        return Err(usage_err(cmd, "unknown command"));
    };
    let mut node = None;
    let mut seen_cmd = false;
    let mut operands: Vec<String> = Vec::new();
    let mut flags: Vec<(&'static str, Option<String>)> = Vec::new();
    let mut only_operands = false;
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        i += 1;
        if only_operands || !a.starts_with('-') || a == "-" {
            if !seen_cmd && a == cmd && !only_operands {
                seen_cmd = true;
            } else {
                operands.push(a.to_owned());
            }
            continue;
        }
        if a == "--" {
            only_operands = true;
            continue;
        }
        if a == "-h" || a == "--help" {
            return Ok(Invocation {
                node,
                cmd: Cmd::Help(help(cmd)),
            });
        }
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) => (n, Some(v.to_owned())),
            None => (a, None),
        };
        let name = if name == "-r" { "--recursive" } else { name };
        let takes = if name == "--node" {
            Some(("--node", true))
        } else {
            spec.iter()
                .find(|(f, _, _)| *f == name)
                .map(|(f, t, _)| (*f, *t))
        };
        let Some((flag, takes)) = takes else {
            return Err(usage_err(cmd, format!("unknown flag {name}")));
        };
        let value = if takes {
            let v = match inline {
                Some(v) => Some(v),
                None => {
                    i += 1;
                    args.get(i - 1).cloned()
                }
            };
            match v {
                Some(v) if !v.is_empty() => Some(v),
                _ => return Err(usage_err(cmd, format!("{flag} needs a value"))),
            }
        } else {
            if inline.is_some() {
                return Err(usage_err(cmd, format!("{flag} takes no value")));
            }
            None
        };
        if flag == "--node" {
            node = value;
        } else {
            flags.push((flag, value));
        }
    }
    let has = |f: &str| flags.iter().any(|(n, _)| *n == f);
    let val = |f: &str| {
        flags
            .iter()
            .rev()
            .find(|(n, _)| *n == f)
            .and_then(|(_, v)| v.clone())
    };
    let at_most = |n: usize| {
        if operands.len() > n {
            Err(usage_err(
                cmd,
                format!("unexpected argument '{}'", operands[n]),
            ))
        } else {
            Ok(())
        }
    };
    let c = match cmd {
        "login" => {
            at_most(1)?;
            if has("--display-name") && !has("--register") {
                return Err(usage_err(cmd, "--display-name goes with --register"));
            }
            Cmd::Login {
                username: operands.first().cloned(),
                password_stdin: has("--password-stdin"),
                register: has("--register"),
                display_name: val("--display-name"),
            }
        }
        "logout" => {
            at_most(0)?;
            Cmd::Logout
        }
        "status" => {
            at_most(0)?;
            Cmd::Status
        }
        "share" => {
            if operands.is_empty() {
                return Err(usage_err(cmd, "name at least one file or folder to share"));
            }
            Cmd::Share {
                paths: operands,
                recursive: has("--recursive"),
                force: has("--force"),
                once: has("--once"),
            }
        }
        "unshare" => {
            if operands.is_empty() {
                return Err(usage_err(cmd, "name at least one shared file"));
            }
            Cmd::Unshare {
                names: operands,
                forget: has("--forget"),
            }
        }
        "ls" => {
            at_most(1)?;
            Cmd::Ls {
                query: operands.first().cloned(),
            }
        }
        "get" => {
            at_most(1)?;
            let Some(what) = operands.first().cloned() else {
                return Err(usage_err(cmd, "name the file to get (its name or SHA-256)"));
            };
            Cmd::Get {
                what,
                to: val("--to"),
                overwrite: has("--overwrite"),
                no_share: has("--no-share"),
            }
        }
        _ => return Err(usage_err(cmd, "unknown command")),
    };
    Ok(Invocation { node, cmd: c })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    fn p(s: &str) -> Result<Invocation, Failure> {
        let a = args(s);
        let cmd = remote_command(&a).expect("a remote command");
        parse(cmd, &a)
    }

    #[test]
    fn only_its_own_words_are_taken() {
        assert_eq!(remote_command(&args("ls")), Some("ls"));
        assert_eq!(remote_command(&args("--node 1.2.3.4:5 get x")), Some("get"));
        assert_eq!(remote_command(&args("--node=a:1 status")), Some("status"));
        assert_eq!(remote_command(&args("up")), None);
        assert_eq!(remote_command(&args("node --client-api-port 0")), None);
        assert_eq!(remote_command(&args("--data-dir ls up")), None);
        assert_eq!(remote_command(&[]), None);
    }

    #[test]
    fn commands_flags_and_operands() {
        let i = p("get report.pdf --to /tmp/x --node=h:1").expect("ok");
        assert_eq!(i.node.as_deref(), Some("h:1"));
        assert_eq!(
            i.cmd,
            Cmd::Get {
                what: "report.pdf".into(),
                to: Some("/tmp/x".into()),
                overwrite: false,
                no_share: false
            }
        );
        let i = p("share -r a b --force").expect("ok");
        assert_eq!(
            i.cmd,
            Cmd::Share {
                paths: vec!["a".into(), "b".into()],
                recursive: true,
                force: true,
                once: false
            }
        );
        let i = p("login bob --password-stdin --register --display-name Bob").expect("ok");
        assert!(matches!(
            i.cmd,
            Cmd::Login {
                register: true,
                password_stdin: true,
                ..
            }
        ));
        let i = p("share -- -odd-name").expect("ok");
        assert!(matches!(i.cmd, Cmd::Share { ref paths, .. } if paths == &["-odd-name"]));
        let i = p("ls ls").expect("ok");
        assert_eq!(
            i.cmd,
            Cmd::Ls {
                query: Some("ls".into())
            }
        );
        assert!(matches!(p("get --help").expect("ok").cmd, Cmd::Help(ref t) if t.contains("--to")));
    }

    #[test]
    fn mistakes_are_usage_errors() {
        for bad in [
            "get",
            "get a b",
            "get a --to",
            "share",
            "ls --bogus",
            "status extra",
            "login --display-name X",
            "logout --force=1",
            "unshare",
        ] {
            let e = p(bad).expect_err(bad);
            assert_eq!(e.code, code::USAGE, "{bad}");
            assert!(e.msg.contains("--help"), "{bad}: {}", e.msg);
        }
    }
}
