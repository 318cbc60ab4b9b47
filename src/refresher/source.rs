//! Which credential source the provider used, named for error messages and
//! the health report.
//!
//! aws-config's providers mark the credentials they return with
//! [`AwsCredentialFeature`]s (the SDK reports them in its user agent). The
//! refresher remembers the source of the last credentials it signed with, so
//! that when the provider later fails (an outage of the container endpoint,
//! STS, instance metadata) the error says which source to check. Credentials
//! built in code carry no marker; their source stays unnamed.

use aws_credential_types::Credentials;
use aws_credential_types::credential_feature::AwsCredentialFeature;

/// What produced `credentials`, as a user would look for it; `None` when the
/// provider did not say. The last marker wins: it is the step that produced
/// these credentials (a profile's role assumption after its source profile).
pub(crate) fn describe(credentials: &Credentials) -> Option<&'static str> {
    credentials
        .get_property::<Vec<AwsCredentialFeature>>()?
        .iter()
        .rev()
        .find_map(name)
}

fn name(feature: &AwsCredentialFeature) -> Option<&'static str> {
    use AwsCredentialFeature as F;
    Some(match feature {
        F::CredentialsHttp => {
            "the container credentials endpoint (ECS task role or EKS Pod Identity: \
             AWS_CONTAINER_CREDENTIALS_FULL_URI or AWS_CONTAINER_CREDENTIALS_RELATIVE_URI)"
        }
        F::CredentialsEnvVarsStsWebIdToken
        | F::CredentialsStsAssumeRoleWebId
        | F::CredentialsProfileStsWebIdToken => {
            "STS AssumeRoleWithWebIdentity (EKS IRSA: AWS_ROLE_ARN and \
             AWS_WEB_IDENTITY_TOKEN_FILE, or web_identity_token_file in the profile)"
        }
        F::CredentialsImds => "the EC2 instance metadata service (instance profile role)",
        F::CredentialsEnvVars => {
            "the environment variables AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        }
        F::CredentialsStsAssumeRole => "STS AssumeRole (role_arn in the profile)",
        F::CredentialsProcess | F::CredentialsProfileProcess => {
            "the profile's credential_process command"
        }
        F::CredentialsSso | F::CredentialsProfileSso => "IAM Identity Center (SSO) in the profile",
        F::CredentialsProfile
        | F::CredentialsProfileSourceProfile
        | F::CredentialsProfileNamedProvider
        | F::CredentialsProfileLogin
        | F::CredentialsLogin => "the shared config and credentials files (profile)",
        F::CredentialsCode => "credentials given in code",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unmarked() -> Credentials {
        Credentials::new("AKIDEXAMPLE", "secret", None, None, "test")
    }

    fn marked(features: &[AwsCredentialFeature]) -> Credentials {
        let mut credentials = unmarked();
        credentials
            .get_property_mut_or_default::<Vec<AwsCredentialFeature>>()
            .extend_from_slice(features);
        credentials
    }

    #[test]
    fn names_the_source_from_the_providers_marker() {
        let http = describe(&marked(&[AwsCredentialFeature::CredentialsHttp])).unwrap();
        assert!(
            http.contains("AWS_CONTAINER_CREDENTIALS_FULL_URI"),
            "{http}"
        );
        let irsa = describe(&marked(&[
            AwsCredentialFeature::CredentialsProfileStsWebIdToken,
        ]));
        assert!(irsa.unwrap().contains("AWS_WEB_IDENTITY_TOKEN_FILE"));
        let imds = describe(&marked(&[AwsCredentialFeature::CredentialsImds]));
        assert!(imds.unwrap().contains("instance metadata"));
    }

    #[test]
    fn the_last_step_wins_and_unmarked_credentials_are_unnamed() {
        let chained = marked(&[
            AwsCredentialFeature::CredentialsProfile,
            AwsCredentialFeature::CredentialsStsAssumeRole,
        ]);
        assert_eq!(
            describe(&chained),
            Some("STS AssumeRole (role_arn in the profile)")
        );
        assert_eq!(describe(&unmarked()), None);
        assert_eq!(
            describe(&marked(&[AwsCredentialFeature::S3ExpressBucket])),
            None
        );
    }
}
