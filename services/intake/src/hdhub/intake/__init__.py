"""hdhub intake: files received over SFTP and HTTP, checked and linked to registrations."""
