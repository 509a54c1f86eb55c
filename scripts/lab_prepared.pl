#!/usr/bin/perl
# A real client of the server-side prepared-statement (binary) protocol, for scripts/make-captures.sh:
# Perl DBI with DBD::MariaDB (Debian package libdbd-mariadb-perl, on libmariadb) and
# mariadb_server_prepare=1, so prepare() sends COM_STMT_PREPARE, execute() COM_STMT_EXECUTE (binary rows
# back), the statement handle's destruction COM_STMT_CLOSE and disconnect() COM_QUIT. No TLS option: the
# connection stays plaintext.
#
#   lab_prepared.pl --port P [--host H] [--user U] [--password PW] [--max N]
#
# Prints the rows on stdout; on an error prints "<what was being done>: <DBI error>" on stderr and exits 1.
use strict;
use warnings;
use DBI qw(:sql_types);
use Getopt::Long qw(GetOptions);

my %opt = (host => '127.0.0.1', user => 'app', password => $ENV{LAB_APP_PASSWORD} // '', max => 3);
GetOptions(\%opt, 'host=s', 'port=i', 'user=s', 'password=s', 'max=i') && $opt{port}
  or die "usage: $0 --port P [--host H] [--user U] [--password PW] [--max N]\n";

my $what = 'connect';
my $ok = eval {
    # database=mysql: the sequence engine's seq_1_to_10 needs a current database.
    my $dbh = DBI->connect(
        "DBI:MariaDB:host=$opt{host};port=$opt{port};database=mysql;"
          . 'mariadb_server_prepare=1;mariadb_connect_timeout=10',
        $opt{user}, $opt{password}, {RaiseError => 1, PrintError => 0, AutoCommit => 1});
    $what = 'prepare';
    my $sth = $dbh->prepare(q{SELECT seq, CONCAT('row ', seq) FROM seq_1_to_10 WHERE seq <= ?});
    $what = 'execute';
    # SQL_INTEGER: the parameter travels as a binary 4-byte integer (MYSQL_TYPE_LONG), not as a string.
    $sth->bind_param(1, $opt{max}, SQL_INTEGER);
    $sth->execute;
    while (my @row = $sth->fetchrow_array) {
        print join("\t", @row), "\n";
    }
    $what = 'close statement';
    undef $sth;    # COM_STMT_CLOSE
    $what = 'disconnect';
    $dbh->disconnect;    # COM_QUIT
    1;
};
if (!$ok) {
    my $e = $@ || 'unknown error';
    $e =~ s/\s+\z//;
    print STDERR "$what: $e\n";
    exit 1;
}
exit 0;
