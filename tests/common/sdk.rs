//! Fixtures for the SDK examples in `examples/python` and `examples/typescript`: their workers run
//! as long-lived processes (killed on drop), their clients run to completion and print one JSON
//! line. Both are the shipped examples, run as a user would run them: Python with
//! `.tools/bin/python`, TypeScript with `.tools/bin/node --import tsx` on a copy of the example
//! whose `node_modules` is the one `scripts/tools.sh` installed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use super::{ChildGuard, Temporal, hermetic_command, repo_root, run, temp_dir, tool, tools_dir};

/// How long a worker gets to start polling (the TypeScript one bundles its workflows first).
pub const WORKER_READY_TIMEOUT: Duration = Duration::from_secs(120);

/// The language of an example worker or client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Language {
    Python,
    TypeScript,
}

impl Language {
    /// A text that appears in the stack trace of the example's failing activity and nowhere else
    /// in a history (the file that defines it).
    pub fn stack_marker(self) -> &'static str {
        match self {
            Language::Python => "demo.py",
            Language::TypeScript => "activities.ts",
        }
    }
}

/// A runnable copy of `examples/typescript`: `src/`, `package.json` and `tsconfig.json` copied
/// into a temp dir, next to a `node_modules` symlink to `$KMSCODEC_TOOLS/node/node_modules`
/// (a copy, not a symlink to the source tree: Node resolves modules from a file's real path).
pub struct TypeScriptExample {
    dir: TempDir,
}

impl TypeScriptExample {
    /// Copies the example; panics if the tools' `node_modules` lacks the Temporal SDK.
    pub fn new() -> TypeScriptExample {
        let modules = tools_dir().join("node/node_modules");
        assert!(
            modules.join("@temporalio/worker").is_dir() && modules.join("tsx").is_dir(),
            "{} has no @temporalio/worker or tsx: run ./scripts/tools.sh",
            modules.display()
        );
        let dir = temp_dir("ts-example");
        let source = repo_root().join("examples/typescript");
        copy_dir(&source.join("src"), &dir.path().join("src"));
        for file in ["package.json", "tsconfig.json"] {
            fs::copy(source.join(file), dir.path().join(file)).expect("copy example file");
        }
        std::os::unix::fs::symlink(&modules, dir.path().join("node_modules"))
            .expect("symlink node_modules");
        TypeScriptExample { dir }
    }

    /// Copies `file` (a test script) into the copy's `src/`, next to the example's modules.
    pub fn add_source(&self, file: &Path) {
        let name = file.file_name().expect("a file name");
        fs::copy(file, self.dir.path().join("src").join(name)).expect("copy test script");
    }

    /// The copy's root.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `node --import tsx src/SCRIPT.ts` in the copy, hermetic environment.
    pub fn command(&self, script: &str) -> Command {
        let mut cmd = hermetic_command(tool("node"), &self.dir.path().join("home"));
        cmd.current_dir(self.dir.path())
            .args(["--import", "tsx"])
            .arg(format!("src/{script}.ts"));
        cmd
    }
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("create dir");
    for entry in fs::read_dir(from).expect("read example dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).expect("copy example file");
        }
    }
}

/// `python examples/python/SCRIPT.py`, hermetic environment.
fn python_command(script: &str, home: &Path) -> Command {
    let mut cmd = hermetic_command(tool("python"), home);
    cmd.arg(repo_root().join(format!("examples/python/{script}.py")));
    cmd
}

fn example_command(
    language: Language,
    script: &str,
    typescript: Option<&TypeScriptExample>,
    home: &Path,
) -> Command {
    match language {
        Language::Python => python_command(script, home),
        Language::TypeScript => typescript
            .expect("a TypeScriptExample for a TypeScript process")
            .command(script),
    }
}

/// Starts `worker.py`/`worker.ts` on `task_queue` with `codec` (`http://…`, `grpc://…` or
/// `unix://…`) and waits until it prints that it polls. Killed when dropped; stop it with
/// [`ChildGuard::terminate`] to check it shuts down cleanly on SIGTERM.
pub fn start_worker(
    language: Language,
    typescript: Option<&TypeScriptExample>,
    temporal: &Temporal,
    task_queue: &str,
    codec: &str,
    log_dir: &Path,
) -> ChildGuard {
    let mut cmd = example_command(language, "worker", typescript, &log_dir.join("home"));
    cmd.args(["--address", &temporal.address])
        .args(["--namespace", "default"])
        .args(["--task-queue", task_queue])
        .args(["--codec", codec]);
    let name = format!("worker-{task_queue}");
    let mut guard = ChildGuard::spawn(&name, cmd, log_dir);
    let marker = format!("worker polling task queue {task_queue}");
    let log_path: PathBuf = guard.log_path().to_path_buf();
    guard.wait_ready(&marker, WORKER_READY_TIMEOUT, || {
        fs::read_to_string(&log_path).is_ok_and(|log| log.contains(&marker))
    });
    guard
}

/// What one run of the demo workflow uses. Everything but `order` (the search attribute) must
/// stay sealed in history.
#[derive(Clone, Debug)]
pub struct DemoRun {
    pub workflow_id: String,
    pub task_queue: String,
    /// Becomes the `OrderId` search attribute: readable by design.
    pub order: String,
    pub name: String,
    pub card: String,
    /// The signal argument.
    pub note: String,
}

impl DemoRun {
    /// Unique values for a run named `label` (no two runs in a process share a secret).
    pub fn new(label: &str) -> DemoRun {
        let unique = format!("{label}-{}", unique_suffix());
        DemoRun {
            workflow_id: format!("wf-{unique}"),
            task_queue: format!("tq-{unique}"),
            order: format!("order-{unique}"),
            name: format!("Name{}", unique.replace('-', "")),
            card: format!("card{}", unique.replace('-', "")),
            note: format!("note{}", unique.replace('-', "")),
        }
    }

    /// The values that must never appear in plain text in a raw history.
    pub fn secrets(&self) -> [&str; 3] {
        [&self.name, &self.card, &self.note]
    }
}

fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{:x}{}", nanos, NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Runs `client.py`/`client.ts`: starts the demo workflow, polls its `status` query, signals
/// `approve` and waits for the result. Returns the client's JSON line
/// (`{"workflowId", "status", "result": {"greeting", "child", "declined", "approval"}}`) or
/// everything it printed.
pub fn run_client(
    language: Language,
    typescript: Option<&TypeScriptExample>,
    temporal: &Temporal,
    codec: &str,
    demo: &DemoRun,
    home: &Path,
) -> Result<Value, String> {
    let mut cmd = example_command(language, "client", typescript, home);
    cmd.args(["--address", &temporal.address])
        .args(["--namespace", "default"])
        .args(["--task-queue", &demo.task_queue])
        .args(["--codec", codec])
        .args(["--workflow-id", &demo.workflow_id])
        .args(["--order", &demo.order])
        .args(["--name", &demo.name])
        .args(["--card", &demo.card])
        .args(["--note", &demo.note])
        .args(["--timeout", "150"]);
    let out = run(cmd, Duration::from_secs(180));
    if !out.status.success() {
        return Err(out.both());
    }
    out.stdout
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str::<Value>(line).ok())
        .ok_or_else(|| format!("no JSON line from the client\n{}", out.both()))
}

/// Checks a client's output against what the demo workflow must return for `demo`.
pub fn assert_demo_result(output: &Value, demo: &DemoRun) {
    let greeting = format!("Hello, {}!", demo.name);
    let expected = serde_json::json!({
        "greeting": greeting,
        "child": format!("{greeting} (checked by a child workflow)"),
        "declined": format!("card {} was declined", demo.card),
        "approval": demo.note,
    });
    assert_eq!(output["result"], expected, "client output: {output}");
    assert_eq!(
        output["status"],
        Value::String(format!("{greeting} Waiting for approval.")),
        "query answer: {output}"
    );
    assert_eq!(
        output["workflowId"],
        Value::String(demo.workflow_id.clone())
    );
}
