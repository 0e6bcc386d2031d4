"""The fields Keycloak 26 reads from a realm file, per representation: the properties of
``org.keycloak.representations.idm.*Representation`` (keycloak/keycloak, core/src/main/java;
the admin REST API's published schemas list the same names). A key outside these is ignored
by Keycloak's import, silently: a typo would be a setting that never took effect.
"""

from __future__ import annotations

REALM = frozenset(
    """
    id realm displayName displayNameHtml notBefore defaultSignatureAlgorithm revokeRefreshToken
    refreshTokenMaxReuse accessTokenLifespan accessTokenLifespanForImplicitFlow ssoSessionIdleTimeout
    ssoSessionMaxLifespan ssoSessionIdleTimeoutRememberMe ssoSessionMaxLifespanRememberMe
    offlineSessionIdleTimeout offlineSessionMaxLifespanEnabled offlineSessionMaxLifespan
    clientSessionIdleTimeout clientSessionMaxLifespan clientOfflineSessionIdleTimeout
    clientOfflineSessionMaxLifespan accessCodeLifespan accessCodeLifespanUserAction
    accessCodeLifespanLogin actionTokenGeneratedByAdminLifespan actionTokenGeneratedByUserLifespan
    oauth2DeviceCodeLifespan oauth2DevicePollingInterval enabled sslRequired
    passwordCredentialGrantAllowed registrationAllowed registrationEmailAsUsername rememberMe
    verifyEmail loginWithEmailAllowed duplicateEmailsAllowed resetPasswordAllowed
    editUsernameAllowed userCacheEnabled realmCacheEnabled bruteForceProtected permanentLockout
    maxTemporaryLockouts bruteForceStrategy maxFailureWaitSeconds minimumQuickLoginWaitSeconds
    waitIncrementSeconds quickLoginCheckMilliSeconds maxDeltaTimeSeconds failureFactor privateKey
    publicKey certificate codeSecret roles groups defaultRoles defaultRole defaultGroups
    requiredCredentials passwordPolicy otpPolicyType otpPolicyAlgorithm otpPolicyInitialCounter
    otpPolicyDigits otpPolicyLookAheadWindow otpPolicyPeriod otpPolicyCodeReusable
    otpSupportedApplications localizationTexts webAuthnPolicyRpEntityName
    webAuthnPolicySignatureAlgorithms webAuthnPolicyRpId webAuthnPolicyAttestationConveyancePreference
    webAuthnPolicyAuthenticatorAttachment webAuthnPolicyRequireResidentKey
    webAuthnPolicyUserVerificationRequirement webAuthnPolicyCreateTimeout
    webAuthnPolicyAvoidSameAuthenticatorRegister webAuthnPolicyAcceptableAaguids
    webAuthnPolicyExtraOrigins webAuthnPolicyPasswordlessRpEntityName
    webAuthnPolicyPasswordlessSignatureAlgorithms webAuthnPolicyPasswordlessRpId
    webAuthnPolicyPasswordlessAttestationConveyancePreference
    webAuthnPolicyPasswordlessAuthenticatorAttachment webAuthnPolicyPasswordlessRequireResidentKey
    webAuthnPolicyPasswordlessUserVerificationRequirement webAuthnPolicyPasswordlessCreateTimeout
    webAuthnPolicyPasswordlessAvoidSameAuthenticatorRegister
    webAuthnPolicyPasswordlessAcceptableAaguids webAuthnPolicyPasswordlessExtraOrigins
    clientProfiles clientPolicies users federatedUsers scopeMappings clientScopeMappings clients
    clientScopes defaultDefaultClientScopes defaultOptionalClientScopes browserSecurityHeaders
    smtpServer userFederationProviders userFederationMappers loginTheme accountTheme adminTheme
    emailTheme eventsEnabled eventsExpiration eventsListeners enabledEventTypes adminEventsEnabled
    adminEventsDetailsEnabled identityProviders identityProviderMappers protocolMappers components
    internationalizationEnabled supportedLocales defaultLocale authenticationFlows
    authenticatorConfig requiredActions browserFlow registrationFlow directGrantFlow
    resetCredentialsFlow clientAuthenticationFlow dockerAuthenticationFlow firstBrokerLoginFlow
    attributes keycloakVersion userManagedAccessAllowed organizationsEnabled organizations
    oid4VciEnabled adminPermissionsEnabled social updateProfileOnInitialSocialLogin socialProviders
    applicationScopeMappings applications oauthClients clientTemplates
    """.split()
)
CLIENT = frozenset(
    """
    id clientId name description type rootUrl adminUrl baseUrl surrogateAuthRequired enabled
    alwaysDisplayInConsole clientAuthenticatorType secret registrationAccessToken defaultRoles
    redirectUris webOrigins notBefore bearerOnly consentRequired standardFlowEnabled
    implicitFlowEnabled directAccessGrantsEnabled serviceAccountsEnabled
    authorizationServicesEnabled directGrantsOnly publicClient frontchannelLogout protocol
    attributes authenticationFlowBindingOverrides fullScopeAllowed nodeReRegistrationTimeout
    registeredNodes protocolMappers clientTemplate useTemplateConfig useTemplateScope
    useTemplateMappers defaultClientScopes optionalClientScopes authorizationSettings access origin
    """.split()
)
PROTOCOL_MAPPER = frozenset("id name protocol protocolMapper consentRequired consentText config".split())
ROLES = frozenset("realm client application".split())
ROLE = frozenset(
    "id name description scopeParamRequired composite composites clientRole containerId attributes".split()
)
ROLE_COMPOSITES = frozenset("realm client application".split())
USER = frozenset(
    """
    id username firstName lastName email emailVerified attributes userProfileMetadata enabled self
    origin createdTimestamp totp federationLink serviceAccountClientId credentials
    disableableCredentialTypes requiredActions federatedIdentities realmRoles clientRoles
    clientConsents notBefore applicationRoles socialLinks groups access
    """.split()
)
GROUP = frozenset(
    "id name description path parentId subGroupCount subGroups attributes realmRoles clientRoles access".split()
)
