//! The launcher gives each test its own moto, reachable through the AWS SDK the operator uses.

use crate::support::moto::Moto;

#[tokio::test]
async fn each_test_gets_its_own_aws() {
    let (a, b) = (Moto::start(), Moto::start());
    assert_ne!(a.endpoint, b.endpoint);
    assert!(
        a.endpoint.starts_with("http://127.0.0.1:"),
        "loopback only: {}",
        a.endpoint
    );
    let sts = aws_sdk_sts::Client::new(&a.sdk_config().await);
    let me = sts
        .get_caller_identity()
        .send()
        .await
        .expect("GetCallerIdentity");
    assert_eq!(me.account(), Some("123456789012"), "moto's default account");

    // moto switches account on AssumeRole into another account, which is how the credential
    // chain is tested.
    let assumed = sts
        .assume_role()
        .role_arn("arn:aws:iam::111122223333:role/ops")
        .role_session_name("test")
        .send()
        .await
        .expect("AssumeRole");
    let credentials = assumed.credentials().expect("credentials");
    let config = aws_sdk_sts::config::Builder::from(&a.sdk_config().await)
        .credentials_provider(aws_sdk_sts::config::Credentials::new(
            credentials.access_key_id(),
            credentials.secret_access_key(),
            Some(credentials.session_token().to_string()),
            None,
            "assumed",
        ))
        .build();
    let who = aws_sdk_sts::Client::from_conf(config)
        .get_caller_identity()
        .send()
        .await
        .expect("identity");
    assert_eq!(who.account(), Some("111122223333"));
    assert!(
        who.arn()
            .is_some_and(|arn| arn.contains("assumed-role/ops/test")),
        "{who:?}"
    );
    drop(b);
}
