/*
 * rsh.h - `trainyard rsh HOST CMD...`: the remote shell mpirun uses
 * (OMPI_MCA_plm_rsh_agent) inside an mpi run. Instead of ssh it asks
 * HOST's agent to run CMD (POST /v1/exec with the run's exec secret from
 * TRAINYARD_MPI_SECRET; agents from TRAINYARD_MPI_AGENTS), streams its
 * output and exits with its exit code. CMD is split into words as a POSIX
 * shell would (mpirun quotes for a remote shell) but never run by one.
 */
#ifndef TRAINYARD_RSH_H
#define TRAINYARD_RSH_H

/* Returns the remote command's exit code, 255 when it could not run it. */
int rsh_main(int argc, char **argv);

/*
 * Splits text into words like a POSIX shell: blanks separate, quotes and
 * backslashes are removed. Refuses (returns NULL) text with shell
 * operators or expansions outside quotes. The caller frees each word and
 * the array (NULL-terminated).
 */
char **rsh_split(const char *text);

#endif
