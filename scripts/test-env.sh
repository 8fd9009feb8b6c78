# Sourced by the test scripts: the same clean environment for every test run.
# Loopback only: never ask the EC2 metadata address for credentials.
export AWS_EC2_METADATA_DISABLED=true
# Nothing from the caller's AWS setup may leak into the tests.
for v in $(env | sed -n 's/^\(AWS_[A-Z0-9_]*\)=.*/\1/p'); do
    [[ $v == AWS_EC2_METADATA_DISABLED ]] || unset "$v"
done
step() { printf '\n== %s\n' "$*"; }
