//! moto's server behind the project's launcher (`tests/support/moto_server.py`): a fresh server
//! per test on a free loopback port, so that every test has its own AWS state. Nothing is
//! installed here: `make test` (or `make venv`) installs moto into `.venv`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The AWS variables a test process may inherit from the machine; all are cleared for the
/// launcher so that nothing ambient reaches it.
pub const AMBIENT_AWS_VARIABLES: &[&str] = &[
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_CA_BUNDLE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_SESSION_NAME",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_EC2_METADATA_DISABLED",
];

/// A small organization for grant tests: 2 accounts, 6 SSO users in 2 groups, 3 IAM users, 2
/// permission sets, 2 users already assigned.
pub const SMALL_ORG: &[&str] = &[
    "--accounts",
    "2",
    "--sso-users",
    "6",
    "--sso-groups",
    "2",
    "--iam-users",
    "3",
    "--permission-sets",
    "2",
    "--assigned-users",
    "2",
];

/// An organization in units: acct-00 in the root, acct-01 in ou-00, acct-02 in ou-01, acct-03 in
/// ou-02 (nested under ou-00); otherwise as `SMALL_ORG`.
pub const UNIT_ORG: &[&str] = &[
    "--accounts",
    "4",
    "--ous",
    "3",
    "--sso-users",
    "6",
    "--sso-groups",
    "2",
    "--iam-users",
    "3",
    "--permission-sets",
    "2",
    "--assigned-users",
    "2",
];

/// An organization for 200 grants or requests: 5 member accounts, 40 SSO users none assigned,
/// one permission set.
pub const FORTY_USERS_FIVE_ACCOUNTS: &[&str] = &[
    "--accounts",
    "5",
    "--sso-users",
    "40",
    "--sso-groups",
    "1",
    "--permission-sets",
    "1",
    "--assigned-users",
    "0",
    "--iam-users",
    "1",
];

/// The ids of the principals assigned the seeded permission set `permission_set` (by name) on
/// `account`, as AWS has them now.
pub async fn assigned(
    moto: &Moto,
    seed: &serde_json::Value,
    account: &str,
    permission_set: &str,
) -> Vec<String> {
    let arn = seed["permissionSets"]
        .as_array()
        .expect("sets")
        .iter()
        .find(|p| p["name"] == permission_set)
        .and_then(|p| p["arn"].as_str())
        .expect("a seeded permission set")
        .to_string();
    let ssoadmin = aws_sdk_ssoadmin::Client::new(&moto.sdk_config().await);
    let listed = ssoadmin
        .list_account_assignments()
        .instance_arn(
            seed["identityCenter"]["instanceArn"]
                .as_str()
                .expect("instance"),
        )
        .account_id(account)
        .permission_set_arn(arn)
        .send()
        .await
        .expect("list the account's assignments");
    listed
        .account_assignments()
        .iter()
        .filter_map(|a| a.principal_id().map(str::to_string))
        .collect()
}

/// The id of the organizational unit the seeder named `name`.
pub fn seeded_unit(seed: &serde_json::Value, name: &str) -> String {
    seed["organizationalUnits"]
        .as_array()
        .expect("units")
        .iter()
        .find(|u| u["name"] == name)
        .and_then(|u| u["id"].as_str())
        .expect("unit")
        .to_string()
}

/// The seeded organization's member accounts: every account but the management account.
pub fn member_accounts(seed: &serde_json::Value) -> Vec<String> {
    seed["accounts"]
        .as_array()
        .expect("accounts")
        .iter()
        .filter_map(|a| a.as_str())
        .filter(|a| *a != "123456789012")
        .map(str::to_string)
        .collect()
}

/// The accounts the seeder put directly under `parent` (the root or a unit).
pub fn seeded_accounts_in(seed: &serde_json::Value, parent: &str) -> Vec<String> {
    seed["accountParents"]
        .as_object()
        .expect("parents")
        .iter()
        .filter(|(_, p)| p.as_str() == Some(parent))
        .map(|(a, _)| a.clone())
        .collect()
}

pub struct Moto {
    pub endpoint: String,
    child: Child,
    /// Where the server's stderr goes, for failure messages.
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The Python that has moto: `MOTO_PYTHON`, or the project's `.venv`.
pub fn python() -> PathBuf {
    match std::env::var_os("MOTO_PYTHON") {
        Some(path) => PathBuf::from(path),
        None => repo().join(".venv/bin/python"),
    }
}

impl Moto {
    /// Starts a server and waits until it listens.
    pub fn start() -> Self {
        let python = python();
        assert!(
            python.exists(),
            "{} not found: run `make venv` (or `make test`) to install moto",
            python.display()
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("moto.log");
        let stderr = std::fs::File::create(&log).expect("log file");
        let mut command = Command::new(&python);
        command
            .arg(repo().join("tests/support/moto_server.py"))
            .stdout(Stdio::piped())
            .stderr(stderr)
            .stdin(Stdio::null());
        for variable in AMBIENT_AWS_VARIABLES {
            command.env_remove(variable);
        }
        let mut child = command.spawn().expect("start the moto launcher");
        let stdout = child.stdout.take().expect("stdout");
        let line = super::first_line(stdout, Duration::from_secs(60));
        let port = line
            .strip_prefix("PORT ")
            .and_then(|p| p.trim().parse::<u16>().ok());
        let Some(port) = port else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the moto launcher did not start (first line {line:?}); its log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        };
        Self {
            endpoint: format!("http://127.0.0.1:{port}"),
            child,
            log,
            _dir: dir,
        }
    }

    /// Seeds the sample organization (`tests/support/seed_org.py`) and returns what it made.
    pub fn seed(&self, args: &[&str]) -> serde_json::Value {
        let mut command = Command::new(python());
        command
            .arg(repo().join("tests/support/seed_org.py"))
            .args(["--endpoint", &self.endpoint])
            .args(args);
        for variable in AMBIENT_AWS_VARIABLES {
            command.env_remove(variable);
        }
        let output = command.output().expect("run the seed script");
        assert!(
            output.status.success(),
            "seeding failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("the seed script prints JSON")
    }

    /// Sets the launcher's faults (see `moto_server.py`); `{}` clears them.
    /// The server's process id (its CPU, in benchmarks).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn set_faults(&self, faults: serde_json::Value) {
        let (status, body) = super::http::request(
            "POST",
            &format!("{}/_launcher/faults", self.endpoint),
            &faults.to_string(),
        )
        .expect("set faults");
        assert_eq!(status, 200, "{body}");
    }

    /// AWS requests moto received, by operation.
    pub fn calls(&self) -> std::collections::BTreeMap<String, u64> {
        let (_, body) =
            super::http::request("GET", &format!("{}/_launcher/calls", self.endpoint), "")
                .expect("calls");
        serde_json::from_str(&body).expect("calls JSON")
    }

    pub fn reset_calls(&self) {
        super::http::request(
            "POST",
            &format!("{}/_launcher/calls/reset", self.endpoint),
            "",
        )
        .expect("reset calls");
    }

    /// The environment a process needs to reach this server and nothing else.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }

    /// An SDK configuration for this server, built explicitly rather than from the process
    /// environment, so that parallel tests cannot see each other's servers.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_sts::config::Credentials::new(
                "testing", "testing", None, None, "moto",
            ))
            .load()
            .await
    }

    /// An IAM client inside `account`, as someone there: through the role AWS Organizations
    /// creates in member accounts (moto switches account on AssumeRole).
    pub async fn iam_in(&self, account: &str) -> aws_sdk_iam::Client {
        let config = self.sdk_config().await;
        let assumed = aws_sdk_sts::Client::new(&config)
            .assume_role()
            .role_arn(format!(
                "arn:aws:iam::{account}:role/OrganizationAccountAccessRole"
            ))
            .role_session_name("test")
            .send()
            .await
            .expect("assume role");
        let credentials = assumed.credentials().expect("credentials");
        aws_sdk_iam::Client::from_conf(
            aws_sdk_iam::config::Builder::from(&config)
                .credentials_provider(aws_sdk_iam::config::Credentials::new(
                    credentials.access_key_id(),
                    credentials.secret_access_key(),
                    Some(credentials.session_token().to_string()),
                    None,
                    "assumed",
                ))
                .build(),
        )
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        // Only the process this launcher started, by its handle.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
