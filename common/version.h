/* version.h - the version of trainyard, set by the build. */
#ifndef TRAINYARD_VERSION_H
#define TRAINYARD_VERSION_H

#ifndef TRAINYARD_VERSION
#define TRAINYARD_VERSION "0.1.0"
#endif

#endif
