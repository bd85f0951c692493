/**
 * @module
 * The Postfix configuration of the throwaway mail server (`mail_server.ts`):
 * a submission-only instance with implicit TLS, SASL checked by Dovecot,
 * and every domain delivered to Dovecot over LMTP on loopback. Text only.
 */

/** Postfix `main.cf` for a submission-only instance delivering to Dovecot over LMTP. */
export function postfixMainCf(
  dir: string,
  lmtpPort: number,
  authPort: number,
  tls: { certPath: string; keyPath: string },
) {
  return `# throwaway test config written by tests/support/mail_server.ts
compatibility_level = 3.6
queue_directory = ${dir}/postfix-queue
data_directory = ${dir}/postfix-data
maillog_file = ${dir}/postfix.log
maillog_file_prefixes = ${dir}
myhostname = mail.example.org
mydomain = example.org
myorigin = example.org
mydestination =
# The only inet service in master.cf names its address; "all" keeps the
# LMTP client from binding its source to a non-loopback address.
inet_interfaces = all
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
local_recipient_maps =
biff = no
append_dot_mydomain = no
smtp_host_lookup = native
lmtp_host_lookup = native
# Every domain is ours: deliver everything to Dovecot, accept any recipient (Dovecot rejects unknown users).
virtual_mailbox_domains = static:all
virtual_transport = lmtp:inet:[127.0.0.1]:${lmtpPort}
smtpd_reject_unlisted_recipient = no
smtpd_relay_restrictions = permit_sasl_authenticated, permit_mynetworks, reject
smtpd_recipient_restrictions =
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = inet:127.0.0.1:${authPort}
smtpd_sasl_security_options = noanonymous
smtpd_tls_cert_file = ${tls.certPath}
smtpd_tls_key_file = ${tls.keyPath}
smtpd_tls_security_level = may
smtpd_tls_auth_only = no
# No reverse DNS of clients: test traffic must not leave the machine.
smtpd_peername_lookup = no
`;
}

/**
 * Postfix `master.cf`: the submission listener and the internal services it
 * needs, none chrooted (the queue is a temp dir without a chroot tree).
 */
export function postfixMasterCf(hostname: string, port: number): string {
  return `# throwaway test config written by tests/support/mail_server.ts
${hostname}:${port} inet n - n - - smtpd
  -o smtpd_tls_wrappermode=yes
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
lmtp unix - - n - - lmtp
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
tlsmgr unix - - n 1000? 1 tlsmgr
postlog unix-dgram n - n - 1 postlogd
`;
}
