/*
 * banned.h - functions trainyard code must not call. Every .c file
 * includes it last, after the system headers, so a use fails to compile
 * (make check-style checks that it is there).
 */
#ifndef TRAINYARD_BANNED_H
#define TRAINYARD_BANNED_H

#define BANNED(func) sorry_##func##_is_banned

#undef strcpy
#define strcpy(x, y) BANNED(strcpy)
#undef strcat
#define strcat(x, y) BANNED(strcat)
#undef sprintf
#define sprintf(...) BANNED(sprintf)
#undef strtok
#define strtok(x, y) BANNED(strtok)
#undef atoi
#define atoi(x) BANNED(atoi)
#undef gmtime
#define gmtime(x) BANNED(gmtime)
#undef localtime
#define localtime(x) BANNED(localtime)

#endif
